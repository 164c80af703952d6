"""End to end: the official mcp clients of both major versions through `bastion proxy` to the demo tool server.

mcp 2.x (this environment) speaks the 2026-07-28 revision: server/discover, plain JSON. mcp 1.x runs
from its own uv project in tests/clients/mcp1 (a subprocess) and speaks the session-based revision:
initialize answered as SSE, Mcp-Session-Id, the GET stream, DELETE.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion import semconv
from bastion.proxy import mcp
from factories import processes
from factories.mcp_sessions import mcp1_session, mcp2_session
from support import AUTH, copy_policies, create_key, free_ports

MAX_BODY = 100_000
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"
LEGACY_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
CALLS: list[dict[str, Any]] = [
    {"name": "get_weather", "arguments": {"city": "Paris"}},
    {"name": "send_money", "arguments": {"amount": 50, "recipient": "alice@example.com"}},
    {"name": "send_email", "arguments": {"to": "x@evil.com", "subject": "hi", "body": "secrets"}},
    {"name": "delete_user", "arguments": {"user_id": "u1"}},
    {"name": "send_money", "arguments": {"amount": 500, "recipient": "alice@example.com"}},
]
ALLOWED = ["get_weather", "send_money"]


@dataclass
class Stack:
    proxy: str
    tools: str
    collector: str
    key: str
    policies: Path

    @property
    def url(self) -> str:
        return f"{self.proxy}/mcp/tools"

    def received(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.tools}/_tool_server/calls").json())

    def forget(self) -> None:
        httpx.delete(f"{self.tools}/_tool_server/calls")

    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("mcp")
    tools_port, proxy_port, explicit_port, collector_port = free_ports(4)
    key = create_key(tmp / "keys.yaml")
    policies = tmp / "policies"
    copy_policies(policies)
    env = {"BASTION_MCP_TOOLS_URL": f"{processes.url(tools_port)}/mcp"}
    flags = ["--keys-file", str(tmp / "keys.yaml"), "--collector-url", processes.url(collector_port)]
    flags += ["--max-body-bytes", str(MAX_BODY)]
    with (
        processes.tool_server(tmp, tools_port) as tools,
        processes.collector(tmp, collector_port) as collector,
        processes.proxy(tmp, "proxy", (proxy_port, explicit_port), env, policies, flags) as proxy,
    ):
        processes.ready(tools, collector, proxy)
        yield Stack(proxy.url, tools.url, collector.url, key, policies)


def check_governed_session(stack: Stack, seen: dict[str, Any]) -> None:
    assert "delete_user" not in seen["tools"]
    assert {"get_weather", "send_email", "send_money"} <= set(seen["tools"])
    weather, payment, email, delete, large = seen["calls"]
    assert weather == {"result": {"text": "Paris: 18 C, cloudy", "is_error": False}}
    assert "50.00 USD sent to alice@example.com" in payment["result"]["text"]
    # Refusals are tool results with isError, which the clients return (no exception) for the model to read.
    assert email["result"]["is_error"] is True and "The tool send_email was not run" in email["result"]["text"]
    assert "condition of 'company-mail-only' not met" in email["result"]["text"]
    assert delete["result"]["is_error"] is True and "never-delete" in delete["result"]["text"]
    assert "Do not retry it with the same arguments" in delete["result"]["text"]
    assert large["result"]["is_error"] is True and "large-payments-need-approval" in large["result"]["text"]
    assert "a human's approval" in large["result"]["text"]
    # The MCP server saw only the allowed calls.
    assert [c["name"] for c in stack.received()] == ALLOWED


def test_mcp2_client_2026_revision(stack: Stack) -> None:
    stack.forget()
    check_governed_session(stack, asyncio.run(mcp2_session(stack.url, stack.key, CALLS)))
    received = stack.received()
    assert {c["protocol_version"] for c in received} == {"2026-07-28"} and received[0]["session_id"] is None


def test_mcp1_client_session_revision(stack: Stack) -> None:
    stack.forget()
    seen = mcp1_session(stack.url, stack.key, CALLS)
    assert seen["sdk_version"].startswith("1.")
    check_governed_session(stack, seen)
    assert seen["logs"] == ["looking up the weather in Paris"]  # notifications in the SSE answer pass through
    received = stack.received()
    # The client holds the server's session id bound to its agent; the server sees its own id.
    assert {c["session_id"] for c in received} == {seen["session_id"].rsplit(".", 1)[0]}
    assert {c["protocol_version"] for c in received} == {seen["protocol_version"]}


def test_the_get_stream_is_streamed_and_delete_ends_the_session(stack: Stack) -> None:
    headers = {**LEGACY_HEADERS, **stack.auth()}
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize"}
    init["params"] = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    opened = httpx.post(stack.url, json=init, headers=headers)
    assert opened.status_code == 200 and opened.headers["content-type"].startswith("text/event-stream")
    assert opened.text.startswith("event: message")
    session = {**headers, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
    note = httpx.post(stack.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
    assert note.status_code == 202
    started = time.monotonic()
    with httpx.stream("GET", stack.url + "/", headers=session, timeout=10) as stream:
        # The stream stays open (the server has nothing to say), yet its headers are here: not buffered.
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        assert time.monotonic() - started < 5
        assert httpx.delete(stack.url, headers=session).status_code == 200
        assert b"tools" not in b"".join(stream.iter_bytes())  # the session's end closes the stream
    assert (
        httpx.post(stack.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=session).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("path", "content", "status", "code", "text"),
    [
        ("/mcp/tools", b"{nope", 400, mcp.PARSE_ERROR, "Parse error"),
        ("/mcp/tools", b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}', 400, mcp.INVALID_REQUEST, "'jsonrpc'"),
        ("/mcp/nope", b"{}", 404, mcp.INVALID_REQUEST, "Configured MCP servers: tools at /mcp/tools"),
        ("/mcp/tools", json.dumps(CALLS[0] | {"padding": "x" * MAX_BODY}).encode(), 413, mcp.INVALID_REQUEST, "limit"),
    ],
)
def test_bad_input_gets_a_clear_jsonrpc_error(
    stack: Stack, path: str, content: bytes, status: int, code: int, text: str
) -> None:
    reply = httpx.post(stack.proxy + path, content=content, headers={**LEGACY_HEADERS, **stack.auth()})
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["code"] == code and text in error["message"]
    assert httpx.get(f"{stack.proxy}/healthz").status_code == 200


def test_clients_get_readable_errors_for_oversized_arguments_and_missing_keys(stack: Stack) -> None:
    big = [{"name": "get_weather", "arguments": {"city": "x" * MAX_BODY}}, CALLS[0]]
    oversized, after = asyncio.run(mcp2_session(stack.url, stack.key, big))["calls"]
    assert "over Bastion's limit" in oversized["error"]["message"]
    assert after["result"]["text"] == "Paris: 18 C, cloudy"  # and the proxy keeps serving
    unauthenticated = httpx.post(stack.url, json=CALLS[0], headers=LEGACY_HEADERS)
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"]["code"] == mcp.UNAUTHENTICATED


def audit_spans(stack: Stack, until: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        items = list(
            httpx.get(auth=AUTH, url=f"{stack.collector}/api/audit", params={"kind": "mcp", "limit": 500}).json()[
                "items"
            ]
        )
        if until(items) or time.monotonic() > deadline:
            return items
        time.sleep(0.3)


def denied_after_traced(items: list[dict[str, Any]]) -> bool:
    """The session's denied call (after its traced one) is in; items are newest first."""
    names = [i["span_name"] if i["trace_id"] != TRACE_ID else TRACE_ID for i in items]
    return TRACE_ID in names and "tools/call delete_user" in names[: names.index(TRACE_ID)]


def span_attributes(stack: Stack, item: dict[str, Any]) -> dict[str, Any]:
    trace = httpx.get(auth=AUTH, url=f"{stack.collector}/api/traces/{item['trace_id']}").json()
    (span,) = [s for s in trace["spans"] if s["span_id"] == item["span_id"]]
    return dict(span["attributes"])


def test_spans_record_tool_calls_and_continue_the_trace_in_meta(stack: Stack) -> None:
    stack.forget()
    meta = {"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"}
    mcp1_session(stack.url, stack.key, [CALLS[0] | {"meta": meta}, CALLS[3]])
    items = audit_spans(stack, denied_after_traced)
    assert all(i["kind"] == semconv.KIND_MCP for i in items)
    assert {"initialize", "tools/list", "notifications/initialized", "GET stream"} <= {i["span_name"] for i in items}
    allowed = next(i for i in items if i["trace_id"] == TRACE_ID)
    denied = next(i for i in items if i["span_name"] == "tools/call delete_user")
    attrs = span_attributes(stack, allowed)
    assert attrs[semconv.GEN_AI_OPERATION_NAME] == semconv.OPERATION_EXECUTE_TOOL
    assert attrs[semconv.GEN_AI_TOOL_NAME] == "get_weather" and attrs[semconv.MCP_METHOD_NAME] == "tools/call"
    assert attrs[semconv.GEN_AI_TOOL_CALL_ID] == attrs[semconv.JSONRPC_REQUEST_ID]
    assert attrs[semconv.MCP_SESSION_ID] and attrs[semconv.BASTION_MCP_SERVER] == "tools"
    assert attrs[semconv.GEN_AI_SECURITY_TARGET_TYPE] == semconv.TARGET_TOOL_CALL
    assert attrs[semconv.BASTION_DECISION] == "allow" and attrs[semconv.BASTION_POLICY_RULE] == "weather-lookups"
    assert attrs[semconv.GEN_AI_SECURITY_DECISION_TYPE] == "allow" and attrs[semconv.BASTION_POLICY_VERSION]
    denied_attrs = span_attributes(stack, denied)
    assert (
        denied_attrs[semconv.BASTION_DECISION] == "deny" and denied_attrs[semconv.BASTION_POLICY_RULE] == "never-delete"
    )
    assert (
        denied_attrs[semconv.GEN_AI_TOOL_NAME] == "delete_user" and denied_attrs[semconv.ERROR_TYPE] == "policy_denied"
    )
    assert denied_attrs[semconv.MCP_SESSION_ID] == attrs[semconv.MCP_SESSION_ID]
    # The proxy span continues the agent's trace, and the MCP server gets the proxy span as parent.
    trace = httpx.get(auth=AUTH, url=f"{stack.collector}/api/traces/{TRACE_ID}").json()
    (span,) = [s for s in trace["spans"] if s["span_id"] == allowed["span_id"]]
    assert span["parent_span_id"] == PARENT_SPAN
    (received,) = stack.received()
    assert received["meta"]["traceparent"].split("-")[1:3] == [TRACE_ID, allowed["span_id"]]


def test_a_named_list_edit_takes_effect_and_refusals_say_which_condition_failed(stack: Stack) -> None:
    payment = [{"name": "send_money", "arguments": {"amount": 20, "recipient": "carol@example.com"}}]

    def outcome() -> dict[str, Any]:
        return dict(asyncio.run(mcp2_session(stack.url, stack.key, payment))["calls"][0]["result"])

    refused = outcome()
    assert refused["is_error"] and "condition of 'small-payments-to-known-payees' not met" in refused["text"]
    payees = stack.policies / "lists" / "payees.txt"
    original = payees.read_text()
    payees.write_text(original + "carol@example.com\n")
    try:
        deadline = time.monotonic() + 10
        while (allowed := outcome())["is_error"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "20.00 USD sent to carol@example.com" in allowed["text"]
    finally:
        payees.write_text(original)
