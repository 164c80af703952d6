"""McpToolList: an agent never sees a tool its policy will not let it call, in JSON answers and in
streams (where it wraps the stream callback set before it)."""

import json
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http

from bastion.proxy.keys import Identity
from factories.addons import engine, feed, mcp_flow, mcp_tool_list, run
from factories.proxy import flow

LISTED = ("get_weather", "delete_user", "send_money")
VISIBLE = ["get_weather", "send_money"]  # delete_user is never allowed; a review is still callable


def tool_list(*names: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": n, "inputSchema": {}} for n in names]}}


def answered(f: http.HTTPFlow, content_type: str, body: bytes = b"", **headers: str) -> http.Response:
    """Gives ``f`` the MCP server's answer; returns it."""
    f.response = http.Response.make(200, body, {"content-type": content_type, **headers})
    return f.response


def names(message: bytes) -> list[str]:
    return [t["name"] for t in json.loads(message)["result"]["tools"]]


def test_json_tool_lists_only_show_callable_tools(tmp_path: Path) -> None:
    f = mcp_flow()
    response = answered(f, "application/json", json.dumps(tool_list(*LISTED)).encode())
    run(mcp_tool_list(engine(tmp_path)), f, "responseheaders", "response")
    assert names(response.content or b"") == VISIBLE


def test_a_role_that_may_call_nothing_sees_no_tools(tmp_path: Path) -> None:
    f = mcp_flow(identity=Identity("agent-9", "visitor", "k9"))
    response = answered(f, "application/json", json.dumps(tool_list(*LISTED)).encode())
    run(mcp_tool_list(engine(tmp_path)), f, "response")
    assert names(response.content or b"") == []


@pytest.mark.parametrize("size", [3, None])
def test_streamed_tool_lists_are_filtered_after_the_callback_set_before(tmp_path: Path, size: int | None) -> None:
    seen: list[bytes] = []

    def before(chunk: bytes) -> bytes:  # ResponseStream's place
        seen.append(chunk)
        return chunk

    f = mcp_flow()
    response = answered(f, "text/event-stream", **{"content-length": "999"})
    response.stream = before
    run(mcp_tool_list(engine(tmp_path)), f, "responseheaders")
    assert "content-length" not in response.headers
    note = b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}\r\n\r\n'
    listing = b"event: message\r\ndata: " + json.dumps(tool_list(*LISTED)).encode() + b"\r\n\r\n"
    out = feed(f, note + listing, size)
    assert out.startswith(note) and names(out[len(note) :].split(b"data: ", 1)[1]) == VISIBLE
    assert b"".join(seen) == note + listing


@pytest.mark.parametrize(
    ("make", "headers"),
    [
        (lambda: mcp_flow(), {"x-bastion-error": "policy_denied"}),  # the proxy's own answer
        (lambda: mcp_flow(identity=None), {}),
        (lambda: flow("/openai/v1/chat/completions"), {}),  # not an MCP server's answer
    ],
    ids=["refusal", "unidentified", "not mcp"],
)
def test_other_answers_are_left_alone(tmp_path: Path, make: Any, headers: dict[str, str]) -> None:
    body = json.dumps(tool_list(*LISTED)).encode()
    f = make()
    response = answered(f, "application/json", body, **headers)
    run(mcp_tool_list(engine(tmp_path)), f, "responseheaders", "response")
    assert response.content == body


def test_a_stream_compressed_unasked_is_not_rewritten(tmp_path: Path) -> None:
    f = mcp_flow()
    response = answered(f, "text/event-stream", **{"content-encoding": "gzip"})
    run(mcp_tool_list(engine(tmp_path)), f, "responseheaders")
    assert not response.stream
