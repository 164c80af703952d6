"""MCP through the default addons, hook by hook, without sockets."""

import json
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bastion import semconv
from bastion.proxy import mcp
from bastion.proxy.config import mcp_server
from bastion.proxy.state import state
from factories.proxy import flow, gateway, mcp_session, run_hooks, run_request, run_response

S1 = mcp_session("s1")  # what the client holds for the server's session "s1"
LEGACY = {"accept": "application/json, text/event-stream", "mcp-session-id": S1, "mcp-protocol-version": "2025-06-18"}
MODERN = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28"}
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
Gateway = tuple[list[object], str, InMemorySpanExporter]


@pytest.fixture
def gw(tmp_path: Path) -> Gateway:
    return gateway(tmp_path, mcp_servers=(mcp_server("tools", "http://tools.test:9200/mcp"),))


def call(name: str, arguments: dict[str, Any], request_id: int | str = 7, **params: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, **params},
    }


def post(gw: Gateway, body: Any, headers: dict[str, str] | None = None, path: str = "/mcp/tools") -> http.HTTPFlow:
    addons, key, _ = gw
    return run_request(addons, flow(path, body, headers={"authorization": f"Bearer {key}", **(headers or LEGACY)}))


def answer(f: http.HTTPFlow) -> dict[str, Any]:
    """The JSON-RPC message the proxy answered with, from JSON or from its one SSE event."""
    assert f.response is not None
    content = f.response.content or b""
    if f.response.headers["content-type"] == "text/event-stream":
        assert content.startswith(b"event: message\r\ndata: ") and content.endswith(b"\r\n\r\n")
        content = content.split(b"data: ", 1)[1]
    return dict(json.loads(content))


def forwarded(f: http.HTTPFlow) -> dict[str, Any]:
    assert f.response is None, f.response and f.response.content
    return dict(json.loads(f.request.content or b""))


@pytest.mark.parametrize("path", ["/mcp/tools", "/mcp/tools/"])
def test_allowed_call_goes_to_the_exact_upstream_path_without_the_agent_key(gw: Gateway, path: str) -> None:
    f = post(gw, call("get_weather", {"city": "Paris"}), {**LEGACY, "accept-encoding": "gzip"}, path=path)
    assert forwarded(f)["params"]["arguments"] == {"city": "Paris"}
    assert f.request.url == "http://tools.test:9200/mcp" and f.request.headers["host"] == "tools.test:9200"
    assert "authorization" not in f.request.headers and f.request.headers["mcp-session-id"] == "s1"
    assert "accept-encoding" not in f.request.headers  # answers come uncompressed, to be read
    assert state(f).decision is not None and state(f).decision.rule == "weather-lookups"  # type: ignore[union-attr]


def test_query_strings_are_kept(gw: Gateway) -> None:
    f = post(gw, call("get_weather", {"city": "Oslo"}), path="/mcp/tools/?trace=1")
    assert f.request.path == "/mcp?trace=1"


@pytest.mark.parametrize(
    ("tool", "arguments", "code", "rule"),
    [
        ("send_email", {"to": "x@evil.com", "subject": "s", "body": "b"}, mcp.POLICY_DENIED, "default-deny"),
        ("delete_user", {"user_id": "u1"}, mcp.POLICY_DENIED, "never-delete"),
        ("send_money", {"amount": 500, "recipient": "alice@example.com"}, mcp.APPROVAL_REQUIRED, "large-payments"),
    ],
)
@pytest.mark.parametrize("revision", ["legacy", "modern"])
def test_refused_calls_are_answered_by_the_proxy_in_the_clients_form(
    tmp_path: Path, tool: str, arguments: dict[str, Any], code: int, rule: str, revision: str
) -> None:
    gw = gateway(
        tmp_path, mcp_servers=(mcp_server("tools", "http://tools.test:9200/mcp"),), mcp_refusals="jsonrpc_error"
    )
    f = post(gw, call(tool, arguments, request_id="abc"), LEGACY if revision == "legacy" else MODERN)
    assert f.request.host == "127.0.0.1"  # never rewritten towards the MCP server
    assert f.response is not None and f.response.status_code == 200
    expected_type = "text/event-stream" if revision == "legacy" else "application/json"
    assert f.response.headers["content-type"] == expected_type
    reply = answer(f)
    assert reply["id"] == "abc" and reply["error"]["code"] == code
    assert rule in reply["error"]["message"] and reply["error"]["data"]["rule"].startswith(rule)
    if code == mcp.APPROVAL_REQUIRED:
        assert "holds" in reply["error"]["message"] and reply["error"]["data"]["code"] == "approval_required"
    if revision == "legacy":
        assert f.response.headers["mcp-session-id"] == S1


@pytest.mark.parametrize(
    ("tool", "arguments", "rule", "advice"),
    [
        ("send_email", {"to": "x@evil.com"}, "default-deny", "condition of 'company-mail-only' not met"),
        ("delete_user", {"user_id": "u1"}, "never-delete", "Do not retry it with the same arguments"),
        ("send_money", {"amount": 500, "recipient": "alice@example.com"}, "large-payments", "a human's approval"),
    ],
)
@pytest.mark.parametrize("headers", [LEGACY, MODERN])
def test_refused_calls_are_tool_results_the_model_can_read_by_default(
    gw: Gateway, tool: str, arguments: dict[str, Any], rule: str, advice: str, headers: dict[str, str]
) -> None:
    f = post(gw, call(tool, arguments, request_id="abc"), headers)
    assert f.response is not None and f.response.status_code == 200
    reply = answer(f)
    assert reply["id"] == "abc" and "error" not in reply and reply["result"]["isError"] is True
    assert reply["result"].get("resultType") == ("complete" if headers is MODERN else None)
    (content,) = reply["result"]["content"]
    assert content["type"] == "text" and f"The tool {tool} was not run" in content["text"]
    assert f"'{rule}" in content["text"] and advice in content["text"]
    assert reply["result"]["_meta"]["bastion/refusal"]["rule"].startswith(rule)


def test_small_payment_to_a_known_payee_is_allowed(gw: Gateway) -> None:
    f = post(gw, call("send_money", {"amount": 50, "recipient": "alice@example.com"}), MODERN)
    assert forwarded(f)["params"]["name"] == "send_money"


def test_refusals_follow_a_json_answering_server_and_the_clients_accept(gw: Gateway) -> None:
    addons, _, _ = gw
    json_session = {**LEGACY, "mcp-session-id": mcp_session("json")}
    learnt = post(gw, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, json_session)
    run_response(
        addons, learnt, http.Response.make(200, b"{}", {"content-type": "application/json", "mcp-session-id": "json"})
    )
    f = post(gw, call("delete_user", {"user_id": "u"}), json_session)
    assert f.response is not None and f.response.headers["content-type"] == "application/json"
    f = post(gw, call("delete_user", {"user_id": "u"}), {**LEGACY, "accept": "application/json"})
    assert f.response is not None and f.response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("body", "path", "headers", "status", "code", "text"),
    [
        (b"{nope", "/mcp/tools", LEGACY, 400, mcp.PARSE_ERROR, "Parse error"),
        ({"id": 1, "method": "tools/call"}, "/mcp/tools", LEGACY, 400, mcp.INVALID_REQUEST, "'jsonrpc'"),
        ([call("get_weather", {"city": "x"})], "/mcp/tools", LEGACY, 400, mcp.INVALID_REQUEST, "batch"),
        (call("get_weather", {}), "/mcp/nope", LEGACY, 404, mcp.INVALID_REQUEST, "tools at /mcp/tools"),
        (call("get_weather", {}), "/mcp/tools/extra", LEGACY, 404, mcp.INVALID_REQUEST, "Configured MCP servers"),
        (call("get_weather", {"city": "x" * 2000}), "/mcp/tools", LEGACY, 413, mcp.INVALID_REQUEST, "limit"),
        (call("get_weather", ["x"]), "/mcp/tools", MODERN, 200, mcp.INVALID_PARAMS, "'arguments' must be"),
    ],
)
def test_bad_input_gets_a_jsonrpc_error(
    gw: Gateway, body: Any, path: str, headers: dict[str, str], status: int, code: int, text: str
) -> None:
    f = post(gw, body, headers, path)
    assert f.response is not None and f.response.status_code == status
    assert f.request.host == "127.0.0.1"
    reply = answer(f)
    assert reply["jsonrpc"] == "2.0" and reply["error"]["code"] == code and text in reply["error"]["message"]


def test_a_missing_key_is_a_jsonrpc_401(gw: Gateway) -> None:
    addons, _, _ = gw
    f = run_request(addons, flow("/mcp/tools", call("get_weather", {}), headers=LEGACY))
    assert f.response is not None and f.response.status_code == 401
    assert answer(f)["error"]["code"] == mcp.UNAUTHENTICATED


def test_other_messages_pass_through_with_the_proxy_span_in_meta(gw: Gateway) -> None:
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}
    f = post(gw, body, {"accept": "application/json, text/event-stream", "traceparent": PARENT})
    sent = forwarded(f)
    assert sent["params"]["protocolVersion"] == "2025-06-18"
    traceparent = sent["params"]["_meta"]["traceparent"]
    assert traceparent == f.request.headers["traceparent"] and traceparent.startswith("00-0af7651916cd43dd")
    for note in ({"jsonrpc": "2.0", "method": "notifications/initialized"}, {"jsonrpc": "2.0", "id": 4, "result": {}}):
        f = post(gw, note)
        assert forwarded(f) == note  # notifications and responses (sampling, elicitation) stay as they were
    addons, key, _ = gw
    for method in ("GET", "DELETE"):
        f = run_request(addons, flow("/mcp/tools", method=method, headers={"authorization": f"Bearer {key}", **LEGACY}))
        assert f.response is None and f.request.url == "http://tools.test:9200/mcp"


def tool_list(*names: str, request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": {"tools": [{"name": n, "inputSchema": {}} for n in names]}}


def test_json_tool_lists_only_show_callable_tools(gw: Gateway) -> None:
    addons, _, _ = gw
    f = post(gw, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, MODERN)
    listing = json.dumps(tool_list("get_weather", "delete_user", "send_money"))
    run_response(addons, f, http.Response.make(200, listing, {"content-type": "application/json"}))
    assert [t["name"] for t in answer(f)["result"]["tools"]] == ["get_weather", "send_money"]


def test_streamed_tool_lists_are_rewritten_and_other_events_pass_as_they_come(gw: Gateway) -> None:
    addons, _, _ = gw
    f = post(gw, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    f.response = http.Response.make(200, b"", {"content-type": "text/event-stream", "content-length": "999"})
    run_hooks(addons, f, ("responseheaders",))
    stream = f.response.stream
    assert callable(stream) and "content-length" not in f.response.headers
    note = b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}\r\n\r\n'
    assert stream(note[:20]) == b"" and stream(note[20:]) == note  # whole events go on at once
    listing = b"event: message\r\ndata: " + json.dumps(tool_list("delete_user", "get_weather")).encode() + b"\r\n\r\n"
    out = stream(listing) + stream(b"")
    assert out.startswith(b"event: message\r\ndata: ") and b"delete_user" not in out and b"get_weather" in out
    run_response(addons, f)


def spans(gw: Gateway) -> dict[str, dict[str, Any]]:
    return {s.name: dict(s.attributes) for s in gw[2].get_finished_spans()}


def test_tool_call_spans_carry_the_mcp_and_decision_attributes(gw: Gateway) -> None:
    addons, _, _ = gw
    allowed = post(gw, call("get_weather", {"city": "Paris"}, request_id=11))
    run_response(addons, allowed, http.Response.make(200, b"", {"content-type": "text/event-stream"}))
    denied = post(gw, call("delete_user", {"user_id": "u1"}, request_id="d-1"), MODERN)
    run_response(addons, denied)
    found = spans(gw)
    weather, delete = found["tools/call get_weather"], found["tools/call delete_user"]
    assert weather[semconv.GEN_AI_OPERATION_NAME] == semconv.OPERATION_EXECUTE_TOOL
    assert weather[semconv.BASTION_CALL_KIND] == semconv.KIND_MCP
    assert weather[semconv.GEN_AI_TOOL_NAME] == "get_weather" and weather[semconv.GEN_AI_TOOL_CALL_ID] == "11"
    assert weather[semconv.JSONRPC_REQUEST_ID] == "11" and weather[semconv.MCP_METHOD_NAME] == "tools/call"
    assert weather[semconv.MCP_SESSION_ID] == "s1" and weather[semconv.MCP_PROTOCOL_VERSION] == "2025-06-18"
    assert weather[semconv.GEN_AI_SECURITY_TARGET_TYPE] == semconv.TARGET_TOOL_CALL
    assert weather[semconv.BASTION_MCP_SERVER] == "tools" and weather[semconv.BASTION_DECISION] == "allow"
    assert weather[semconv.BASTION_POLICY_RULE] == "weather-lookups"
    assert delete[semconv.BASTION_DECISION] == "deny" and delete[semconv.BASTION_POLICY_RULE] == "never-delete"
    assert delete[semconv.GEN_AI_TOOL_CALL_ID] == "d-1" and delete[semconv.ERROR_TYPE] == "policy_denied"
    assert semconv.MCP_SESSION_ID not in delete


def test_other_messages_get_mcp_spans(gw: Gateway) -> None:
    addons, key, _ = gw
    listing = post(gw, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    run_response(addons, listing, http.Response.make(200, b"{}", {"content-type": "application/json"}))
    stream = run_request(addons, flow("/mcp/tools", method="GET", headers={"authorization": f"Bearer {key}", **LEGACY}))
    run_response(addons, stream, http.Response.make(200, b"", {"content-type": "text/event-stream"}))
    unknown = post(gw, call("get_weather", {}), path="/mcp/nope")
    run_response(addons, unknown)
    found = spans(gw)
    assert found["tools/list"][semconv.MCP_METHOD_NAME] == "tools/list"
    assert found["tools/list"][semconv.BASTION_CALL_KIND] == semconv.KIND_MCP
    assert semconv.GEN_AI_TOOL_NAME not in found["tools/list"]
    assert found["GET stream"][semconv.BASTION_CALL_KIND] == semconv.KIND_MCP
    assert found["GET stream"][semconv.MCP_SESSION_ID] == "s1"
    refused = next(a for name, a in found.items() if a.get(semconv.ERROR_TYPE) == "unknown_mcp_server")
    assert refused[semconv.BASTION_CALL_KIND] == semconv.KIND_MCP


def test_trace_context_in_meta_is_continued_and_replaced(gw: Gateway) -> None:
    addons, _, exporter = gw
    meta = {"traceparent": PARENT, "progressToken": 1}
    f = post(gw, call("get_weather", {"city": "Rome"}, _meta=meta))
    sent = forwarded(f)["params"]["_meta"]
    run_response(addons, f, http.Response.make(200, b"", {"content-type": "text/event-stream"}))
    (span,) = exporter.get_finished_spans()
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None and format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    assert sent["progressToken"] == 1 and sent["traceparent"].split("-")[2] == format(span.context.span_id, "016x")
    assert f.request.headers["traceparent"] == sent["traceparent"]


@pytest.mark.parametrize(
    "presented", [mcp_session("s1", agent="agent-2"), "s1", mcp_session("s1", server="files"), "s1.forged"]
)
@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
def test_a_session_id_not_handed_to_this_agent_is_refused_as_an_unknown_session(
    gw: Gateway, presented: str, method: str
) -> None:
    addons, key, _ = gw
    headers = {**LEGACY, "authorization": f"Bearer {key}", "mcp-session-id": presented}
    f = run_request(addons, flow("/mcp/tools", call("get_weather", {"city": "Paris"}), method=method, headers=headers))
    assert f.request.host == "127.0.0.1"  # never rewritten towards the MCP server
    assert f.response is not None and f.response.status_code == 404
    reply = answer(f)
    assert reply["error"]["code"] == mcp.INVALID_REQUEST and reply["error"]["data"]["code"] == "unknown_mcp_session"
    assert "mcp-session-id" not in f.response.headers
    assert state(f).decision is not None and state(f).decision.rule == "unknown_mcp_session"  # type: ignore[union-attr]


def test_the_servers_session_id_reaches_the_client_bound_to_its_agent(gw: Gateway) -> None:
    addons, key, _ = gw
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}
    headers = {"authorization": f"Bearer {key}", "accept": LEGACY["accept"]}
    f = run_request(addons, flow("/mcp/tools", init, headers=headers))
    assert "mcp-session-id" not in f.request.headers
    opened = http.Response.make(200, b"{}", {"content-type": "application/json", "mcp-session-id": "s9"})
    run_response(addons, f, opened)
    assert f.response is not None and f.response.headers["mcp-session-id"] == mcp_session("s9")


def test_rules_can_name_the_mcp_server_of_a_tool(tmp_path: Path) -> None:
    servers = (mcp_server("tools", "http://tools.test:9200/mcp"), mcp_server("other", "http://other.test:9200/mcp"))
    rules = "p, role:assistant, tool:tools/get_weather, call, allow, weather-from-tools-only,\n"
    gw = gateway(tmp_path, mcp_servers=servers, rules=rules)
    assert forwarded(post(gw, call("get_weather", {"city": "Paris"}), MODERN))["params"]["name"] == "get_weather"
    refused = post(gw, call("get_weather", {"city": "Paris"}), MODERN, path="/mcp/other")
    assert "default-deny" in json.dumps(answer(refused)) and "tool:other/get_weather" in json.dumps(answer(refused))
    addons, _, _ = gw
    for path, shown in (("/mcp/tools", ["get_weather"]), ("/mcp/other", [])):
        f = post(gw, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, MODERN, path=path)
        listing = json.dumps(tool_list("get_weather", "send_money"))
        run_response(addons, f, http.Response.make(200, listing, {"content-type": "application/json"}))
        assert [t["name"] for t in answer(f)["result"]["tools"]] == shown


PROVENANCE_RULES = (
    "p, role:assistant, tool:fetch, call, review, untrusted-url, from_untrusted(r.args.url)\n"
    "p, role:assistant, tool:fetch, call, allow, fetch,\n"
    'p, role:assistant, tool:send_email, call, allow, two-mails, session_count("tool:send_email") < 2\n'
)


def test_a_call_no_model_call_emitted_is_of_unknown_origin(tmp_path: Path) -> None:
    gw = gateway(tmp_path, mcp_servers=(mcp_server("tools", "http://tools.test:9200/mcp"),), rules=PROVENANCE_RULES)
    f = post(gw, call("fetch", {"url": "https://docs.example.com/"}))
    st = state(f)
    assert st.decision is not None and st.decision.rule == "untrusted-url"
    assert answer(f)["result"]["isError"] is True
    assert json.loads(st.attributes[semconv.BASTION_PROVENANCE]) == {"unknown": True}
    assert json.loads(st.attributes[semconv.BASTION_TOOL_ARGUMENTS]) == {"url": "https://docs.example.com/"}
    assert st.attributes[semconv.BASTION_POLICY_OBJECT] == "tool:tools/fetch"


def test_session_counts_are_per_mcp_session(tmp_path: Path) -> None:
    gw = gateway(tmp_path, mcp_servers=(mcp_server("tools", "http://tools.test:9200/mcp"),), rules=PROVENANCE_RULES)
    mail = call("send_email", {"to": "a@example.com", "subject": "s", "body": "b"})
    rules = [state(post(gw, {**mail, "id": i})).decision.rule for i in range(3)]  # type: ignore[union-attr]
    assert rules == ["two-mails", "two-mails", "default-deny"]
    other = {**LEGACY, "mcp-session-id": mcp_session("s2")}
    assert state(post(gw, mail, other)).decision.rule == "two-mails"  # type: ignore[union-attr]
    f = post(gw, {**mail, "id": 9})
    assert json.loads(state(f).attributes[semconv.BASTION_SESSION_CALLS])[0][0] == "tool:tools/send_email"
