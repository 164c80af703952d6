"""Classify: each routed request becomes a Call; a model endpoint's call is a model call or refused."""

from typing import Any

import pytest

from bastion import semconv
from bastion.proxy.decision import Effect
from bastion.proxy.state import state
from factories.addons import classify_addon, routed, run
from factories.proxy import chat_body, flow, route


def read(f: Any, body: Any) -> Any:
    """``f`` as Validate leaves it: its body read."""
    state(f).body = body
    return f


@pytest.mark.parametrize(
    ("path", "body", "provider", "operation", "stream"),
    [
        ("/openai/v1/chat/completions", chat_body(stream=True), "openai", "chat", True),
        ("/openai/v1/responses", {"model": "scripted-small", "input": "hi"}, "openai", "chat", False),
        ("/anthropic/v1/messages", chat_body(), "anthropic", "chat", False),
        ("/openai/v1/embeddings", {"model": "scripted-small", "input": "hi"}, "openai", "embeddings", False),
    ],
)
def test_model_calls_name_provider_model_and_operation(
    path: str, body: dict[str, Any], provider: str, operation: str, stream: bool
) -> None:
    f = run(classify_addon(), read(routed(flow(path, body)), body), "request")
    call = state(f).call
    assert f.response is None and call is not None
    assert (call.kind, call.provider, call.operation, call.model, call.stream) == (
        semconv.KIND_MODEL,
        provider,
        operation,
        "scripted-small",
        stream,
    )
    assert call.policy_object == "model:scripted-small"


def test_other_requests_are_plain_http_calls() -> None:
    http_route = route("http", upstream="http://api.weather.example/")
    f = run(classify_addon(), routed(flow("/http/forecast", method="GET"), http_route), "request")
    call = state(f).call
    assert call is not None and call.kind == semconv.KIND_HTTP
    assert (call.policy_object, call.policy_action) == ("http:api.weather.example/forecast", "GET")


def test_a_model_call_whose_body_was_not_read_is_refused_not_taken_for_http() -> None:
    f = run(classify_addon(), routed(flow(body=chat_body())), "request")  # Validate did not run
    assert f.response is not None and f.response.status_code == 400
    assert f.response.headers["x-bastion-error"] == "invalid_json"
    decision = state(f).decision
    assert decision is not None and decision.effect is Effect.ERROR and state(f).call is None


def test_unrouted_or_answered_flows_are_left_alone() -> None:
    unrouted = run(classify_addon(), flow(body=chat_body()), "request")
    answered = routed(flow(body=chat_body()))
    answered.kill()
    run(classify_addon(), answered, "request")
    assert state(unrouted).call is None and state(answered).call is None and answered.response is None
