"""Limits through the default addons, hook by hook, without sockets."""

import json
from pathlib import Path
from typing import Any

from mitmproxy import http
from mitmproxy.flow import Error

from bastion import semconv
from bastion.proxy.addons import Limits
from bastion.proxy.config import mcp_server
from bastion.proxy.limits import parse
from bastion.proxy.state import state
from factories.proxy import chat_body, flow, gateway, mcp_session, run_hooks, run_request, run_response

LEGACY = {"accept": "application/json, text/event-stream", "mcp-session-id": mcp_session("s1")}
MODERN = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28"}


def limited(tmp_path: Path, raw: dict[str, Any], mcp_refusals: str = "tool_result") -> tuple[list[object], str, Any]:
    tools = (mcp_server("tools", "http://tools.test:9200/mcp"),)
    return gateway(tmp_path, mcp_servers=tools, limits=parse(Path("bastion.yaml"), raw), mcp_refusals=mcp_refusals)


def weather(request_id: int = 7) -> dict[str, Any]:
    params = {"name": "get_weather", "arguments": {"city": "Paris"}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def finish(addons: list[object], f: http.HTTPFlow, status: int = 200, body: Any = None) -> http.HTTPFlow:
    content = json.dumps(body or {}).encode()
    return run_response(addons, f, http.Response.make(status, content, {"content-type": "application/json"}))


def test_a_model_call_over_the_rate_is_429_in_its_api_format_recorded_with_the_limits_name(tmp_path: Path) -> None:
    addons, key, spans = limited(tmp_path, {"defaults": {"requests_per_minute": 1}})
    auth = {"authorization": f"Bearer {key}"}
    finish(addons, run_request(addons, flow(body=chat_body(), headers=auth)))
    f = run_request(addons, flow("/anthropic/v1/messages", {**chat_body(), "max_tokens": 5}, headers=auth))
    assert f.response is not None and f.response.status_code == 429
    assert f.response.headers["retry-after"] == "60" and f.response.headers["x-bastion-error"] == "rate_limit_exceeded"
    assert json.loads(f.response.content or b"")["error"]["type"] == "rate_limit_error"
    finish(addons, f)
    attributes = spans.get_finished_spans()[-1].attributes or {}
    assert attributes[semconv.BASTION_POLICY_RULE] == "limit:rate:agent"
    assert attributes[semconv.BASTION_DECISION] == "deny"
    assert attributes[semconv.ERROR_TYPE] == "rate_limit_exceeded"


def test_a_repeated_mcp_tool_call_is_a_tool_error_and_an_alert(tmp_path: Path) -> None:
    addons, key, spans = limited(tmp_path, {"defaults": {"max_repeats": 1}})
    auth = {"authorization": f"Bearer {key}"}
    first = run_request(addons, flow("/mcp/tools", weather(), headers={**auth, **LEGACY}))
    assert first.response is None
    finish(addons, first)
    # Another conversation (its header names it) counts on its own.
    other = {**auth, **MODERN, "x-bastion-conversation": "c"}
    f = run_request(addons, flow("/mcp/tools", weather(8), headers=other))
    assert f.response is None
    finish(addons, f)
    f = run_request(addons, flow("/mcp/tools", weather(9), headers={**auth, **LEGACY}))
    assert f.response is not None and f.response.status_code == 200
    answer = json.loads((f.response.content or b"").split(b"data: ", 1)[1])
    assert answer["id"] == 9 and answer["result"]["isError"] is True
    assert "get_weather was not run" in answer["result"]["content"][0]["text"]
    assert answer["result"]["_meta"]["bastion/refusal"] == {
        "code": "repeated_tool_call",
        "rule": "limit:runaway:repeat",
    }
    finish(addons, f)
    attributes = spans.get_finished_spans()[-1].attributes or {}
    assert attributes[semconv.BASTION_ALERT_TYPE] == "runaway_agent"
    assert attributes[semconv.BASTION_POLICY_RULE] == "limit:runaway:repeat"


def test_over_mcp_with_jsonrpc_errors_a_rate_limit_is_an_error_with_retry_after(tmp_path: Path) -> None:
    addons, key, _ = limited(tmp_path, {"defaults": {"requests_per_second": 1}}, mcp_refusals="jsonrpc_error")
    auth = {"authorization": f"Bearer {key}"}
    finish(addons, run_request(addons, flow("/mcp/tools", weather(), headers={**auth, **LEGACY})))
    f = run_request(addons, flow("/mcp/tools", weather(), headers={**auth, **LEGACY}))
    assert f.response is not None and f.response.headers["content-type"] == "text/event-stream"
    error = json.loads((f.response.content or b"").split(b"data: ", 1)[1])["error"]
    assert error["code"] == -32013 and error["data"] == {
        "code": "rate_limit_exceeded",
        "rule": "limit:rate:agent",
        "retry_after": 1,
    }


def test_the_token_estimate_is_corrected_from_the_usage_read_after(tmp_path: Path) -> None:
    addons, key, _ = limited(tmp_path, {"defaults": {"tokens_per_minute": 300}})
    auth = {"authorization": f"Bearer {key}"}
    big = {**chat_body(), "max_tokens": 250}
    f = run_request(addons, flow(body=big, headers=auth))
    assert f.response is None
    finish(addons, f, body={"usage": {"prompt_tokens": 5, "completion_tokens": 5}})
    assert state(f).usage.input_tokens == 5
    f = run_request(addons, flow(body=big, headers=auth))
    assert f.response is None  # without the correction the first estimate (about 290) would still count
    finish(addons, f)  # no usage: the estimate stands
    f = run_request(addons, flow(body=big, headers=auth))
    assert f.response is not None and f.response.status_code == 429
    assert state(f).decision is not None and state(f).decision.rule == "limit:tokens:agent"  # type: ignore[union-attr]


def test_calls_a_policy_refused_are_not_counted(tmp_path: Path) -> None:
    addons, key, _ = limited(tmp_path, {"defaults": {"requests_per_minute": 1}})
    auth = {"authorization": f"Bearer {key}"}
    denied = run_request(addons, flow(body=chat_body("scripted-large"), headers=auth))
    assert denied.response is not None and denied.response.status_code == 403
    assert run_request(addons, flow(body=chat_body(), headers=auth)).response is None


def test_a_limit_that_cannot_be_checked_does_not_let_the_call_pass(tmp_path: Path) -> None:
    addons, key, _ = limited(tmp_path, {"defaults": {"requests_per_minute": 10}})
    limits = next(a for a in addons if isinstance(a, Limits))

    def broken(_: object) -> None:
        raise RuntimeError("bug")

    limits.limiter.check = broken  # type: ignore[assignment,method-assign]
    f = run_request(addons, flow(body=chat_body(), headers={"authorization": f"Bearer {key}"}))
    assert f.response is not None and f.response.status_code == 500
    assert f.response.headers["x-bastion-error"] == "limits_failed" and f.request.host != "upstream.test"


def test_no_answer_from_upstream_counts_toward_its_circuit_but_an_agent_leaving_does_not(tmp_path: Path) -> None:
    addons, key, _ = limited(tmp_path, {"upstreams": {"failures": 2, "cooldown_seconds": 30}})
    auth = {"authorization": f"Bearer {key}"}
    for message in ("Client disconnected.", "Connection killed.", "Client disconnected."):
        f = run_request(addons, flow(body=chat_body(), headers=auth))
        f.error = Error(message)
        run_hooks(addons, f, ("error",))
    assert run_request(addons, flow(body=chat_body(), headers=auth)).response is None
    for _ in range(2):
        f = run_request(addons, flow(body=chat_body(), headers=auth))
        f.error = Error("Server connection to upstream.test:9100 failed: connection refused")
        run_hooks(addons, f, ("error",))
    f = run_request(addons, flow(body=chat_body(), headers=auth))
    assert f.response is not None and f.response.status_code == 503
    assert f.response.headers["x-bastion-error"] == "upstream_circuit_open"
