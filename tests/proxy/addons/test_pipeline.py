"""The default addons together, hook by hook, without sockets."""

import json
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http

from bastion import semconv
from bastion.proxy.addons.authorization import Authorize
from bastion.proxy.addons.classification import Classify
from bastion.proxy.addons.validation import Validate
from bastion.proxy.state import state
from factories.proxy import REGULAR, chat_body, flow, gateway, route, run_hooks, run_request, run_response


def error_of(f: http.HTTPFlow) -> tuple[int, str]:
    assert f.response is not None
    return f.response.status_code, f.response.headers["x-bastion-error"]


@pytest.fixture
def gw(tmp_path: Path) -> tuple[list[object], str, object]:
    return gateway(tmp_path)


def test_allowed_call_is_forwarded_with_the_provider_key(gw: tuple[list[object], str, object]) -> None:
    addons, key, _ = gw
    f = run_request(
        addons, flow(body=chat_body(), headers={"authorization": f"Bearer {key}", "x-bastion-agent": "admin"})
    )
    assert f.response is None
    assert f.request.url == "http://upstream.test:9100/v1/chat/completions"
    assert f.request.headers["authorization"] == "Bearer real-key"
    assert "x-bastion-agent" not in f.request.headers and f.request.headers["host"] == "upstream.test:9100"


def test_anthropic_calls_carry_x_api_key(gw: tuple[list[object], str, object]) -> None:
    addons, key, _ = gw
    f = run_request(addons, flow("/anthropic/v1/messages", chat_body(), headers={"x-api-key": key}))
    assert f.response is None and f.request.headers["x-api-key"] == "real-key"
    assert "authorization" not in f.request.headers


@pytest.mark.parametrize(
    ("auth", "request_args", "status", "code"),
    [
        (None, {}, 401, "missing_key"),
        ("bst_nope", {}, 401, "unknown_key"),
        ("key", {"path": "/elsewhere/x"}, 404, "unknown_route"),
        ("key", {"body": b"{not json"}, 400, "invalid_json"),
        ("key", {"body": [1, 2]}, 400, "invalid_json"),
        ("key", {"body": b'{"model": "m", "messages": ' + b"[" * 101 + b"]" * 101 + b"}"}, 400, "invalid_json"),
        ("key", {"body": b'{"model": "m", "max_tokens": NaN}'}, 400, "invalid_json"),
        ("key", {"body": {"messages": []}}, 400, "missing_model"),
        ("key", {"headers": {"content-type": "text/plain"}}, 415, "unsupported_content_type"),
        ("key", {"body": {"model": "m", "pad": "x" * 2000}}, 413, "body_too_large"),
        ("key", {"body": chat_body("scripted-large")}, 403, "policy_denied"),
        ("key", {"body": chat_body("gpt-4o")}, 403, "policy_denied"),
    ],
)
def test_refusals_never_reach_upstream(
    gw: tuple[list[object], str, object],
    auth: str | None,
    request_args: dict[str, Any],
    status: int,
    code: str,
) -> None:
    addons, key, _ = gw
    args: dict[str, Any] = {"body": chat_body(), **request_args}
    if auth is not None:
        args["headers"] = {
            "authorization": f"Bearer {key if auth == 'key' else auth}",
            **args.get("headers", {}),
        }
    f = run_request(addons, flow(**args))
    assert error_of(f) == (status, code)
    assert f.request.host == "127.0.0.1"  # never rewritten towards upstream


@pytest.mark.parametrize(
    ("crashed", "status", "code"),
    [(Validate, 400, "invalid_json"), (Classify, 500, "no_decision"), (Authorize, 500, "no_decision")],
)
def test_a_call_an_addon_failed_to_decide_is_refused_not_forwarded(
    gw: tuple[list[object], str, object], crashed: type, status: int, code: str
) -> None:
    """mitmproxy logs an addon's exception and goes on with the flow: as if ``crashed`` had raised."""
    addons, key, _ = gw
    f = run_request([a for a in addons if not isinstance(a, crashed)], flow(body=chat_body(), headers=auth(key)))
    assert error_of(f) == (status, code)
    assert f.request.host == "127.0.0.1" and state(f).decision is not None and state(f).decision.rule == code


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_deny_names_the_rule_in_the_openai_format(gw: tuple[list[object], str, object]) -> None:
    addons, key, _ = gw
    f = run_request(addons, flow(body=chat_body("scripted-large"), headers={"authorization": f"Bearer {key}"}))
    assert f.response is not None
    assert "no-large-models" in json.loads(f.response.content or b"")["error"]["message"]


def test_missing_provider_key_fails_closed(tmp_path: Path) -> None:
    addons, key, _ = gateway(tmp_path, (route("openai", key=None),))
    f = run_request(addons, flow(body=chat_body(), headers={"authorization": f"Bearer {key}"}))
    assert error_of(f) == (502, "provider_key_missing")


def test_explicit_mode_routes_by_host(tmp_path: Path) -> None:
    addons, key, _ = gateway(tmp_path, (route("openai", hosts=["api.openai.com"], upstream="https://api.openai.com/"),))
    f = flow(
        "/v1/chat/completions",
        chat_body(),
        host="api.openai.com",
        port=443,
        mode=REGULAR,
        headers={"authorization": f"Bearer {key}"},
    )
    run_request(addons, f)
    assert f.response is None and f.request.headers["authorization"] == "Bearer real-key"


def test_span_records_the_call_and_the_decision(gw: tuple[list[object], str, object]) -> None:
    addons, key, exporter = gw
    f = run_request(
        addons,
        flow(
            body=chat_body(),
            headers={
                "authorization": f"Bearer {key}",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            },
        ),
    )
    assert f.request.headers["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    body = {
        "id": "c",
        "model": "scripted-small-v1",
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }
    run_response(addons, f, http.Response.make(200, json.dumps(body), {"content-type": "application/json"}))
    (span,) = exporter.get_finished_spans()  # type: ignore[attr-defined]
    assert span.name == "chat scripted-small"
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    attrs = dict(span.attributes)
    assert attrs[semconv.BASTION_AGENT_ID] == "agent-1" and attrs[semconv.BASTION_DECISION] == "allow"
    assert attrs[semconv.BASTION_POLICY_RULE] == "assistant-scripted-models"
    assert attrs[semconv.GEN_AI_RESPONSE_MODEL] == "scripted-small-v1"
    assert (attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS], attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS]) == (3, 4)
    assert attrs[semconv.GEN_AI_PROVIDER_NAME] == "openai" and attrs[semconv.HTTP_RESPONSE_STATUS_CODE] == 200


def test_refused_calls_are_recorded_too(gw: tuple[list[object], str, object]) -> None:
    addons, _, exporter = gw
    f = run_request(addons, flow(body=chat_body(), headers={"authorization": "Bearer bst_x"}))
    run_response(addons, f)
    (span,) = exporter.get_finished_spans()  # type: ignore[attr-defined]
    assert span.attributes[semconv.BASTION_DECISION] == "deny"
    assert span.attributes[semconv.ERROR_TYPE] == "unknown_key"


def test_streamed_events_pass_unchanged_and_yield_usage(gw: tuple[list[object], str, object]) -> None:
    addons, key, exporter = gw
    f = run_request(addons, flow(body=chat_body(stream=True), headers={"authorization": f"Bearer {key}"}))
    f.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
    run_hooks(addons, f, ("responseheaders",))
    stream = f.response.stream
    assert callable(stream)
    events = (
        b'data: {"model": "m2", "choices": []}\n\n'
        b'data: {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}\n\n'
        b"data: [DONE]\n\n"
    )
    # A stream callable may return bytes or a list of chunks (empty while it holds events).
    pieces = [stream(events[i : i + 7]) for i in range(0, len(events), 7)] + [stream(b"")]
    out = b"".join(p if isinstance(p, bytes) else b"".join(p) for p in pieces)
    assert out == events
    run_hooks(addons, f, ("response",))
    (span,) = exporter.get_finished_spans()  # type: ignore[attr-defined]
    assert span.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 2
    assert span.attributes[semconv.GEN_AI_RESPONSE_MODEL] == "m2"


def basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/forecast", None), ("POST", "/v1/forecast", 403), ("GET", "/v1/%2e%2e/admin", 400)],
)
def test_http_tool_calls_through_https_proxy_are_decided_on_method_host_and_path(
    gw: tuple[list[object], str, object], method: str, path: str, status: int | None
) -> None:
    addons, key, _ = gw
    headers = {"proxy-authorization": basic("agent-1", key), "authorization": "Bearer tool-own-token"}
    f = flow(path, b"", method=method, host="api.weather.example", port=443, mode=REGULAR, headers=headers)
    run_request(addons, f)
    assert (f.response.status_code if f.response else None) == status
    if status is None:
        assert f.request.headers["authorization"] == "Bearer tool-own-token"  # the tool's own credential
        assert "proxy-authorization" not in f.request.headers


def test_http_tool_calls_need_proxy_credentials(gw: tuple[list[object], str, object]) -> None:
    addons, key, _ = gw
    f = flow(
        "/v1/forecast",
        b"",
        method="GET",
        host="api.weather.example",
        port=443,
        mode=REGULAR,
        headers={"authorization": f"Bearer {key}"},
    )
    assert error_of(run_request(addons, f)) == (401, "missing_key")


def test_tunnel_credentials_identify_the_requests_inside_it(gw: tuple[list[object], str, object]) -> None:
    addons, key, _ = gw
    connect = flow(
        "api.weather.example:443",
        b"",
        method="CONNECT",
        host="api.weather.example",
        port=443,
        mode=REGULAR,
        headers={"proxy-authorization": f"Bearer {key}"},
    )
    identify = next(a for a in addons if type(a).__name__ == "Identify")
    identify.http_connect(connect)  # type: ignore[attr-defined]
    inner = flow("/v1/forecast", b"", method="GET", host="api.weather.example", port=443, mode=REGULAR)
    inner.client_conn = connect.client_conn
    assert run_request(addons, inner).response is None
