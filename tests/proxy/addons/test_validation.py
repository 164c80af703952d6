"""Validate: bad input gets a clear 4xx in the caller's format before anything else; a good model call's
body is read once, for the addons after it."""

import json
from typing import Any

import pytest

from bastion.proxy.decision import Effect
from bastion.proxy.state import state
from factories.addons import routed, run, validate
from factories.proxy import chat_body, flow, route


def refusal(f: Any) -> tuple[int, str]:
    assert f.response is not None
    code = f.response.headers["x-bastion-error"]
    decision = state(f).decision
    assert decision is not None and decision.effect is Effect.ERROR and decision.rule == code
    return f.response.status_code, code


def test_a_good_model_call_is_read_once_for_the_addons_after_it() -> None:
    f = run(validate(), routed(flow(body=chat_body())))
    assert f.response is None and state(f).body == chat_body() and state(f).decision is None


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (chat_body(), {"content-type": "text/plain"}, (415, "unsupported_content_type")),
        (b"{not json", {}, (400, "invalid_json")),
        (b"[1, 2]", {}, (400, "invalid_json")),
        (b"[" * 200 + b"]" * 200, {}, (400, "invalid_json")),
        (b"\xff\xfe", {}, (400, "invalid_json")),
        ({"messages": []}, {}, (400, "missing_model")),
        ({"model": ""}, {}, (400, "missing_model")),
        (b"x" * 2000, {}, (413, "body_too_large")),
    ],
)
def test_bad_model_calls_are_refused(body: Any, headers: dict[str, str], expected: tuple[int, str]) -> None:
    f = run(validate(), routed(flow(body=body, headers=headers)))
    assert refusal(f) == expected and state(f).body is None


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read() -> None:
    f = run(validate(), routed(flow(headers={"content-length": "4096"})), "requestheaders")
    assert refusal(f) == (413, "body_too_large")


@pytest.mark.parametrize("path", ["/openai/v1/../v1/chat/completions", "/openai/v1/%2e%2e/admin", "/openai/.\\x"])
def test_dot_segments_are_refused_as_policies_decide_on_the_path_as_sent(path: str) -> None:
    f = run(validate(), routed(flow(path, body=chat_body())))
    assert refusal(f) == (400, "dot_segments_in_path")


def test_refusals_are_in_the_callers_format() -> None:
    f = run(validate(), routed(flow("/anthropic/v1/messages", b"{")))
    assert refusal(f) == (400, "invalid_json") and f.response is not None
    assert json.loads(f.response.content or b"")["type"] == "error"


def test_other_endpoints_need_no_json() -> None:
    http_route = route("http", upstream="http://api.weather.example/")
    form = flow("/http/forecast", b"city=Paris", headers={"content-type": "text/plain"})
    f = run(validate(), routed(form, http_route))
    assert f.response is None and state(f).body is None


def test_an_answered_flow_is_left_alone() -> None:
    f = routed(flow(body=b"{not json"))
    f.kill()
    run(validate(), f)
    assert f.response is None and state(f).decision is None
