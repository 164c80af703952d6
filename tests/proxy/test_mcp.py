"""MCP helpers as plain functions: messages, errors, tool-list filtering, SSE rewriting, trace context."""

import json
from typing import Any

import pytest

from bastion.proxy import mcp
from bastion.proxy.config import ConfigError, load, mcp_server
from bastion.proxy.errors import error_body

TOOLS = {
    "jsonrpc": "2.0",
    "id": 7,
    "result": {"tools": [{"name": "get_weather", "inputSchema": {}}, {"name": "delete_user", "inputSchema": {}}]},
}


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/mcp/tools", "tools"),
        ("/mcp/tools/", "tools"),
        ("/mcp/tools?x=1", "tools"),
        ("/mcp/tools/extra", "tools/extra"),
        ("/mcp", ""),
        ("/mcp/", ""),
        ("/openai/v1/chat/completions", None),
        ("/mcpx", None),
    ],
)
def test_server_name_from_path(path: str, name: str | None) -> None:
    assert mcp.server_name(path) == name


@pytest.mark.parametrize(
    ("body", "code", "text"),
    [
        (b"{nope", mcp.PARSE_ERROR, "Parse error"),
        (b"\xff\xfe", mcp.PARSE_ERROR, "Parse error"),
        (b"[]", mcp.INVALID_REQUEST, "empty batch"),
        (b"42", mcp.INVALID_REQUEST, "must be an object"),
        (b'{"id": 1, "method": "x"}', mcp.INVALID_REQUEST, "'jsonrpc' must be"),
        (b'{"jsonrpc": "2.0", "id": true, "method": "x"}', mcp.INVALID_REQUEST, "'id' must be"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": 5}', mcp.INVALID_REQUEST, "'method' must be"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "x", "params": 3}', mcp.INVALID_REQUEST, "'params' must be"),
        (b'{"jsonrpc": "2.0", "id": 1}', mcp.INVALID_REQUEST, "need a 'method'"),
        (b'{"jsonrpc": "2.0", "id": 1, "params": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", mcp.PARSE_ERROR, "deeper"),
    ],
)
def test_malformed_messages_get_jsonrpc_codes(body: bytes, code: int, text: str) -> None:
    with pytest.raises(mcp.JsonRpcError, match=text) as raised:
        mcp.read(body)
    assert raised.value.code == code


def test_messages_requests_notifications_responses_and_batches() -> None:
    (request,), batch = mcp.read(b'{"jsonrpc":"2.0","id":"a","method":"tools/list"}')
    assert not batch and request.is_request and request.id == "a" and request.params == {}
    (note,), _ = mcp.read(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
    assert not note.is_request and note.id is None
    (reply,), _ = mcp.read(b'{"jsonrpc":"2.0","id":3,"result":{}}')
    assert reply.method is None and not reply.is_request
    messages, batch = mcp.read(b'[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","id":1,"method":"b"}]')
    assert batch and [m.method for m in messages] == ["a", "b"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"name": "send_money", "arguments": {"amount": 5}}, ("send_money", {"amount": 5})),
        ({"name": "get_weather"}, ("get_weather", {})),
        ({"name": "get_weather", "arguments": None}, ("get_weather", {})),
        ({"arguments": {}}, "needs 'name'"),
        ({"name": "x", "arguments": [1]}, "must be an object"),
    ],
)
def test_tool_call_name_and_arguments(params: dict[str, Any], expected: object) -> None:
    message = mcp.Message({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params})
    if isinstance(expected, str):
        with pytest.raises(mcp.JsonRpcError, match=expected) as raised:
            mcp.tool_call(message)
        assert raised.value.code == mcp.INVALID_PARAMS and raised.value.request_id == 9
    else:
        assert mcp.tool_call(message) == expected


def test_errors_and_events_are_jsonrpc() -> None:
    err = mcp.error(4, mcp.POLICY_DENIED, "no", {"rule": "r"})
    assert err == {"jsonrpc": "2.0", "id": 4, "error": {"code": -32010, "message": "no", "data": {"rule": "r"}}}
    event = mcp.sse_event(err)
    assert event.startswith(b"event: message\r\ndata: ") and event.endswith(b"\r\n\r\n")
    assert json.loads(event.split(b"data: ", 1)[1]) == err
    # HTTP-level refusals on MCP routes are JSON-RPC errors too (401, 404, 413, ...).
    assert error_body("mcp", 401, "who?", "missing_key")["error"] == {
        "code": mcp.UNAUTHENTICATED,
        "message": "who?",
        "data": {"code": "missing_key"},
    }


@pytest.mark.parametrize(
    ("headers", "modern", "sse"),
    [
        ({"accept": "application/json, text/event-stream"}, False, True),
        ({"mcp-protocol-version": "2025-06-18", "accept": "application/json"}, False, False),
        ({"mcp-protocol-version": "2026-07-28", "accept": "application/json, text/event-stream"}, True, True),
    ],
)
def test_revision_and_accept(headers: dict[str, str], modern: bool, sse: bool) -> None:
    assert mcp.is_modern(headers) is modern and mcp.accepts_sse(headers) is sse


def test_trace_context_in_meta_is_read_and_replaced() -> None:
    message = mcp.Message(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "x", "_meta": {"traceparent": "00-a-b-01", "tracestate": "k=v", "progressToken": 3}},
        }
    )
    assert mcp.trace_carrier(message) == {"traceparent": "00-a-b-01", "tracestate": "k=v"}
    replaced = mcp.with_trace_context(message, {"traceparent": "00-c-d-01"})
    assert replaced["params"]["_meta"] == {"progressToken": 3, "traceparent": "00-c-d-01"}
    assert replaced["params"]["name"] == "x" and message.body["params"]["_meta"]["tracestate"] == "k=v"
    bare = mcp.Message({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert mcp.trace_carrier(bare) == {}
    assert mcp.with_trace_context(bare, {"traceparent": "t"})["params"] == {"_meta": {"traceparent": "t"}}
    for odd in ([1, 2], "text", 7):  # not an object: replaced, never a crash
        message = mcp.Message({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"_meta": odd}})
        assert mcp.with_trace_context(message, {"traceparent": "t"})["params"]["_meta"] == {"traceparent": "t"}


def visible(name: str) -> bool:
    return name != "delete_user"


def test_filter_tools_hides_what_is_not_visible() -> None:
    filtered = mcp.filter_tools(TOOLS, visible)
    assert filtered is not None and [t["name"] for t in filtered["result"]["tools"]] == ["get_weather"]
    assert mcp.filter_tools(TOOLS, lambda _: True) is None  # nothing hidden: left as it was
    for other in ({"jsonrpc": "2.0", "id": 1, "result": {"content": []}}, {"method": "x"}, [1], "x"):
        assert mcp.filter_tools(other, visible) is None


def test_sse_rewriter_rewrites_tool_lists_and_keeps_everything_else() -> None:
    note = b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{}}\r\n\r\n'
    listing = b"id: 5\nevent: message\ndata: " + json.dumps(TOOLS).encode() + b"\nretry: 100\n\n"
    stream = b": ping\n\n" + note + listing + b"data: partial"
    rewriter = mcp.sse_rewriter(lambda m: mcp.filter_tools(m, visible))
    out = b"".join(rewriter(stream[i : i + 11]) for i in range(0, len(stream), 11)) + rewriter(b"")
    assert out.startswith(b": ping\n\n" + note) and out.endswith(b"data: partial")
    rewritten = out[len(b": ping\n\n" + note) : -len(b"data: partial")]
    lines = rewritten.split(b"\n")
    assert lines[:2] == [b"id: 5", b"event: message"] and lines[3] == b"retry: 100" and rewritten.endswith(b"\n\n")
    assert [t["name"] for t in json.loads(lines[2].removeprefix(b"data: "))["result"]["tools"]] == ["get_weather"]


def test_chain_feeds_one_callback_into_the_next_and_flushes_both() -> None:
    seen: list[bytes] = []

    def tee(chunk: bytes) -> bytes:
        seen.append(chunk)
        return chunk

    rewriter = mcp.chain(tee, mcp.sse_rewriter(lambda m: mcp.filter_tools(m, visible)))
    listing = b"data: " + json.dumps(TOOLS).encode() + b"\n\n"
    assert rewriter(listing[:10]) == b""
    assert b"delete_user" not in rewriter(listing[10:])
    assert rewriter(b"data: tail") == b"" and rewriter(b"") == b"data: tail"
    assert seen[-1] == b""


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("http://127.0.0.1:9200/mcp", "/mcp"),
        ("http://h/", "/"),
        ("http://h", "/"),
        ("https://h/a/mcp?k=1", "/a/mcp?k=1"),
    ],
)
def test_mcp_servers_forward_to_the_exact_url(url: str, path: str) -> None:
    server = mcp_server("tools", url)
    assert server.path == path and server.route.prefix == "/mcp/tools" and server.route.provider == "mcp"
    assert server.upstream_path("") == path
    assert server.upstream_path("x=2") == path + ("&x=2" if "?" in path else "?x=2")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("mcp_servers: {tools: x}", "mcp_servers must be a list"),
        ("mcp_servers: [{url: 'http://x/mcp'}]", r"mcp_servers\[0\]: missing key 'name'"),
        ("mcp_servers: [{name: t}]", "missing key 'url'"),
        ("mcp_servers: [{name: 'a/b', url: 'http://x/mcp'}]", "name 'a/b' must be letters"),
        ("mcp_servers: [{name: t, url: 'ftp://x/mcp'}]", "url not an http"),
        ("mcp_servers: [{name: t, url: 'http://x/'}, {name: t, url: 'http://y/'}]", "names must be unique"),
        ("routes: [{name: a, prefix: /mcp/a/, upstream: 'http://x/'}]", "reserved for mcp_servers"),
    ],
)
def test_invalid_mcp_configuration_names_the_problem(tmp_path: Any, text: str, error: str) -> None:
    (tmp_path / "bastion.yaml").write_text(text)
    with pytest.raises(ConfigError, match=error):
        load(tmp_path)


def test_bundled_configuration_serves_the_demo_tool_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from support import SESSION_POLICIES

    monkeypatch.delenv("BASTION_MCP_TOOLS_URL", raising=False)
    config = load(SESSION_POLICIES)
    server = config.mcp_server("tools")
    assert server is not None and server.route.upstream.authority == "127.0.0.1:9200" and server.path == "/mcp"
    monkeypatch.setenv("BASTION_MCP_TOOLS_URL", "http://127.0.0.1:9999/other")
    assert load(SESSION_POLICIES).mcp_servers[0].path == "/other"
