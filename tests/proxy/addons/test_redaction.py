"""The Redaction addon through the default addons, hook by hook, without sockets."""

from __future__ import annotations

import inspect
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from opentelemetry.sdk.trace import TracerProvider

from bastion.proxy import audit_payload
from bastion.proxy.addons import default_addons
from bastion.proxy.addons.redaction import Redaction, _mcp_stream
from bastion.proxy.config import GatewayConfig, mcp_server
from bastion.proxy.pii import audit
from bastion.proxy.pii.config import parse
from bastion.proxy.pii.streams import Blocked
from bastion.proxy.policy import PolicyEngine
from bastion.proxy.state import state
from factories.proxy import SESSIONS, flow, keystore, mcp_session, policies_dir, route

EMAIL = "maria.gonzalez@example.org"
ALICE = "alice@example.com"  # one the policy lets send_email write to
LEGACY = {
    "accept": "application/json, text/event-stream",
    "mcp-session-id": mcp_session("s1"),
    "mcp-protocol-version": "2025-06-18",
}


def gateway(tmp_path: Path, pii: dict[str, Any]) -> tuple[list[object], str]:
    keys, key = keystore(tmp_path)
    config = GatewayConfig(
        routes=(route("openai"), route("anthropic")),
        keys_file=tmp_path / "keys.yaml",
        mcp_servers=(mcp_server("tools", "http://tools.test:9200/mcp"),),
    )
    tracer = TracerProvider().get_tracer("t")
    pii_config = parse(pii, tmp_path / "pii.yaml")
    engine = PolicyEngine(policies_dir(tmp_path))
    addons = default_addons(config, keys, engine, tracer, 1 << 20, pii=pii_config, sessions=SESSIONS)
    return addons, key


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_global_auditor() -> Any:
    yield
    audit.install(None)


async def run(addons: list[object], f: http.HTTPFlow, hooks: tuple[str, ...]) -> http.HTTPFlow:
    for hook in hooks:
        for addon in addons:
            if hasattr(addon, hook):
                result = getattr(addon, hook)(f)
                if inspect.isawaitable(result):
                    await result
    return f


async def request(
    addons: list[object], key: str, body: Any, path: str = "/openai/v1/chat/completions", **headers: str
) -> http.HTTPFlow:
    f = flow(path, body, headers={"authorization": f"Bearer {key}", **headers})
    return await run(addons, f, ("requestheaders", "request"))


async def respond(addons: list[object], f: http.HTTPFlow, body: Any) -> http.HTTPFlow:
    f.response = http.Response.make(200, json.dumps(body).encode(), {"content-type": "application/json"})
    return await run(addons, f, ("responseheaders", "response"))


def chat(text: str) -> dict[str, Any]:
    return {"model": "scripted-small", "messages": [{"role": "user", "content": text}]}


async def test_pseudonyms_go_out_and_come_back(tmp_path: Path) -> None:
    addons, key = gateway(tmp_path, {"entities": {"EMAIL_ADDRESS": "pseudonymize"}})
    f = await request(addons, key, chat(f"mail {EMAIL}"))
    assert f.response is None
    sent = json.loads(f.request.get_content() or b"")
    assert sent["messages"][0]["content"] == "mail <EMAIL_ADDRESS_1>"
    assert state(f).attributes["bastion.pii.request.EMAIL_ADDRESS"] == 1
    reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "to <EMAIL_ADDRESS_1>"}}]}
    await respond(addons, f, reply)
    assert (
        f.response is not None
        and json.loads(f.response.get_content() or b"")["choices"][0]["message"]["content"] == f"to {EMAIL}"
    )
    # audit_payload redacts with the installed configuration.
    assert audit_payload.audit_payload({"args": {"to": EMAIL}}) == {"args": {"to": "<EMAIL_ADDRESS>"}}


async def test_a_conversation_header_keeps_placeholders_across_first_messages(tmp_path: Path) -> None:
    addons, key = gateway(tmp_path, {"entities": {"EMAIL_ADDRESS": "pseudonymize"}})
    await request(addons, key, chat(f"one {EMAIL}"), **{"x-bastion-conversation": "c1"})
    f = await request(addons, key, chat("two bob@example.com"), **{"x-bastion-conversation": "c1"})
    assert json.loads(f.request.get_content() or b"")["messages"][0]["content"] == "two <EMAIL_ADDRESS_2>"
    assert "x-bastion-conversation" not in f.request.headers


@pytest.mark.parametrize(("on_error", "blocked"), [("block", True), ("allow", False)])
async def test_a_failed_analysis_fails_closed_or_open_as_configured(
    tmp_path: Path, on_error: str, blocked: bool
) -> None:
    addons, key = gateway(
        tmp_path, {"entities": {"EMAIL_ADDRESS": "redact"}, "force_error": True, "on_error": on_error}
    )
    f = await request(addons, key, chat(f"mail {EMAIL}"))
    attributes = state(f).attributes
    if blocked:
        assert f.response is not None and f.response.status_code == 503
        assert json.loads(f.response.get_content() or b"")["error"]["code"] == "pii_check_failed"
    else:
        assert f.response is None and attributes["bastion.pii.failed_open"] is True
    assert attributes["bastion.pii.error"] == "failed (RuntimeError)"


@pytest.mark.parametrize(("mode", "changed"), [("audit", False), ("enforce", True)])
async def test_mcp_tool_calls_are_counted_and_redacted_when_enforced(tmp_path: Path, mode: str, changed: bool) -> None:
    addons, key = gateway(tmp_path, {"entities": {"EMAIL_ADDRESS": "redact"}, "mcp": mode})
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "send_email", "arguments": {"to": ALICE}},
    }
    f = await request(addons, key, body, "/mcp/tools", **LEGACY)
    assert f.response is None
    sent = json.loads(f.request.get_content() or b"")["params"]["arguments"]["to"]
    assert sent == ("<EMAIL_ADDRESS>" if changed else ALICE)
    assert state(f).attributes["bastion.pii.request.EMAIL_ADDRESS"] == 1
    result = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": f"sent to {ALICE}"}]}}
    await respond(addons, f, result)
    assert f.response is not None
    text = json.loads(f.response.get_content() or b"")["result"]["content"][0]["text"]
    assert text == ("sent to <EMAIL_ADDRESS>" if changed else f"sent to {ALICE}")
    assert state(f).attributes["bastion.pii.response.EMAIL_ADDRESS"] == 1


async def test_an_mcp_json_answer_with_a_blocked_type_answers_the_call_with_a_jsonrpc_error(tmp_path: Path) -> None:
    pii = {"entities": {"EMAIL_ADDRESS": {"request": "allow", "response": "block"}}, "mcp": "enforce"}
    addons, key = gateway(tmp_path, pii)
    body = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "get_weather", "arguments": {}}}
    f = await request(addons, key, body, "/mcp/tools", **LEGACY)
    result = {"jsonrpc": "2.0", "id": 9, "result": {"content": [{"type": "text", "text": f"ask {ALICE}"}]}}
    await respond(addons, f, result)
    assert f.response is not None and f.response.status_code == 200
    answer = json.loads(f.response.get_content() or b"")
    assert answer["id"] == 9 and answer["error"]["data"] == {"code": "pii_blocked"}
    assert ALICE not in json.dumps(answer)


def test_mcp_answers_over_sse_are_rewritten_event_by_event() -> None:
    stream = _mcp_stream(lambda text, json_string: text.replace(EMAIL, "<EMAIL_ADDRESS>"))
    message = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": f"to {EMAIL}"}]}}
    raw = b"event: message\r\ndata: " + json.dumps(message).encode() + b"\r\n\r\n"
    out = b"".join(stream(raw[:20]) + stream(raw[20:]) + stream(b""))
    assert out.startswith(b"event: message\n") and EMAIL.encode() not in out
    assert json.loads(out.split(b"data: ", 1)[1])["result"]["content"][0]["text"] == "to <EMAIL_ADDRESS>"


async def test_previous_response_id_continues_the_conversation(tmp_path: Path) -> None:
    addons, key = gateway(tmp_path, {"entities": {"EMAIL_ADDRESS": "pseudonymize"}})
    path = "/openai/v1/responses"
    f = await request(addons, key, {"model": "scripted-small", "input": f"I am {EMAIL}"}, path)
    assert json.loads(f.request.get_content() or b"")["input"] == "I am <EMAIL_ADDRESS_1>"
    await respond(addons, f, {"id": "resp_1", "object": "response", "output": []})
    turn = {"model": "scripted-small", "input": "and bob@example.com", "previous_response_id": "resp_1"}
    f = await request(addons, key, turn, path)
    assert json.loads(f.request.get_content() or b"")["input"] == "and <EMAIL_ADDRESS_2>"


async def test_a_type_blocked_in_answers_ends_a_stream_with_an_error_event(tmp_path: Path) -> None:
    pii = {"entities": {"EMAIL_ADDRESS": {"request": "allow", "response": "block"}}, "holdback_chars": 8}
    addons, key = gateway(tmp_path, pii)
    f = await request(addons, key, {**chat("hi"), "stream": True})
    f.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
    await run(addons, f, ("responseheaders",))
    stream = f.response.stream
    assert callable(stream)
    sent = b""
    for piece in ("Write to ", EMAIL, " today, and more text after it"):
        chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        out = stream(f"data: {json.dumps(chunk)}\n\n".encode())
        sent += out if isinstance(out, bytes) else b"".join(out)
    for last in (b"data: [DONE]\n\n", b""):
        out = stream(last)
        sent += out if isinstance(out, bytes) else b"".join(out)
    assert EMAIL.encode() not in sent and b"pii_blocked" in sent and b"[DONE]" not in sent


def redaction(addons: list[object]) -> Redaction:
    return next(a for a in addons if isinstance(a, Redaction))


async def test_answers_are_analyzed_off_the_event_loop(tmp_path: Path) -> None:
    addons, key = gateway(tmp_path, {"entities": {"EMAIL_ADDRESS": "redact"}})
    detector = redaction(addons).detector
    assert detector is not None
    threads: list[str] = []
    analyze = detector.analyze

    def spy(text: str, remember: bool = True) -> Any:
        threads.append(threading.current_thread().name)
        return analyze(text, remember)

    detector.analyze = spy  # type: ignore[method-assign]
    f = await respond(addons, await request(addons, key, chat("hi")), {"choices": [{"message": {"content": EMAIL}}]})
    assert EMAIL.encode() not in (f.response.get_content() if f.response else EMAIL.encode())
    f = await request(addons, key, {**chat("hi"), "stream": True})
    f.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
    await run(addons, f, ("responseheaders",))
    assert callable(f.response.stream)
    chunk = {"choices": [{"index": 0, "delta": {"content": f"to {EMAIL} now"}, "finish_reason": "stop"}]}
    sent = b"".join(f.response.stream(f"data: {json.dumps(chunk)}\n\n".encode()) + f.response.stream(b""))
    assert b"to <EMAIL_ADDRESS> now" in sent
    assert len(threads) >= 2 and all(name.startswith("bastion-pii") for name in threads)


@pytest.mark.parametrize(("on_error", "status"), [("block", 503), ("allow", 200)])
async def test_a_failed_analysis_of_an_answer_withholds_it_or_restores_only(
    tmp_path: Path, on_error: str, status: int
) -> None:
    rules = {"EMAIL_ADDRESS": {"request": "pseudonymize", "response": "redact"}}
    addons, key = gateway(tmp_path, {"entities": rules, "on_error": on_error})
    f = await request(addons, key, chat(f"mail {EMAIL}"))
    detector = redaction(addons).detector
    assert detector is not None

    def broken(text: str, remember: bool = True) -> Any:
        raise RuntimeError("analyzer down")

    detector.analyze = broken  # type: ignore[method-assign]
    reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "to <EMAIL_ADDRESS_1>"}}]}
    f = await respond(addons, f, reply)
    assert f.response is not None and f.response.status_code == status
    body = json.loads(f.response.get_content() or b"")
    if status == 503:
        assert body["error"]["code"] == "pii_check_failed" and "answer" in body["error"]["message"]
    else:
        assert body["choices"][0]["message"]["content"] == f"to {EMAIL}"
        assert state(f).attributes["bastion.pii.failed_open"] is True


def test_an_mcp_answer_over_sse_with_a_blocked_type_becomes_a_jsonrpc_error() -> None:
    def process(text: str, json_string: bool) -> str:
        if EMAIL in text:
            raise Blocked("EMAIL_ADDRESS")
        return text

    stream = _mcp_stream(process)
    message = {"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": f"to {EMAIL}"}]}}
    out = b"".join(stream(b"event: message\ndata: " + json.dumps(message).encode() + b"\n\n") + stream(b""))
    answer = json.loads(out.split(b"data: ", 1)[1])
    assert EMAIL.encode() not in out
    assert answer["id"] == 7 and answer["error"]["data"] == {"code": "pii_blocked"}
    assert "EMAIL_ADDRESS" in answer["error"]["message"]


def test_a_notification_over_sse_with_a_blocked_type_is_withheld() -> None:
    def process(text: str, json_string: bool) -> str:
        if EMAIL in text:
            raise Blocked("EMAIL_ADDRESS")
        return text

    notification = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": f"mail {EMAIL}"}}
    out = b"".join(_mcp_stream(process)(b"event: message\ndata: " + json.dumps(notification).encode() + b"\n\n"))
    assert out.startswith(b": ") and out.endswith(b"\n\n") and EMAIL.encode() not in out


async def test_a_resent_conversation_gets_the_same_placeholders_on_any_replica(tmp_path: Path) -> None:
    pii = {"entities": {"EMAIL_ADDRESS": "pseudonymize"}}
    for replica in ("a", "b"):
        (tmp_path / replica).mkdir()
    (first, key_a), (second, key_b) = gateway(tmp_path / "a", pii), gateway(tmp_path / "b", pii)
    f = await request(first, key_a, chat(f"mail {EMAIL}"))
    await respond(
        first, f, {"choices": [{"index": 0, "message": {"role": "assistant", "content": "to <EMAIL_ADDRESS_1>"}}]}
    )
    turn = {
        "model": "scripted-small",
        "messages": [
            {"role": "user", "content": f"mail {EMAIL}"},
            {"role": "assistant", "content": f"to {EMAIL}"},
            {"role": "user", "content": "and bob@example.com"},
        ],
    }
    sent = [
        json.loads((await request(addons, key, turn)).request.get_content() or b"")
        for addons, key in ((first, key_a), (second, key_b))
    ]
    assert sent[0] == sent[1]
    assert [m["content"] for m in sent[1]["messages"]] == [
        "mail <EMAIL_ADDRESS_1>",
        "to <EMAIL_ADDRESS_1>",
        "and <EMAIL_ADDRESS_2>",
    ]


async def test_a_lone_surrogate_is_analyzed_and_sent_on_as_its_escape(tmp_path: Path) -> None:
    addons, key = gateway(tmp_path, {"entities": {"EMAIL_ADDRESS": "redact"}})
    f = flow(
        "/openai/v1/chat/completions",
        b'{"model": "scripted-small", "messages": [{"role": "user", "content": "\\ud800 ' + EMAIL.encode() + b'"}]}',
        headers={"authorization": f"Bearer {key}"},
    )
    await run(addons, f, ("requestheaders", "request"))
    assert f.response is None
    assert json.loads(f.request.get_content() or b"")["messages"][0]["content"] == "\ud800 <EMAIL_ADDRESS>"


async def test_an_error_while_redacting_a_request_fails_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    addons, key = gateway(tmp_path, {"entities": {"EMAIL_ADDRESS": "redact"}})
    redaction = next(a for a in addons if isinstance(a, Redaction))

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("anonymizer broke")

    monkeypatch.setattr(redaction.redactor, "apply", broken)
    f = await request(addons, key, chat(f"mail {EMAIL}"))
    assert f.response is not None and f.response.status_code == 503
    assert state(f).decision is not None and state(f).decision.rule == "pii_check_failed"
