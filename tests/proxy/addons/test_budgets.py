"""Cost on each model call's span, and budgets refusing calls in the caller's API format, without sockets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mitmproxy import http

from bastion import semconv
from bastion.budgets import Budget
from bastion.proxy import cost
from bastion.proxy.budget_guard import BudgetGuard
from bastion.proxy.cost import Price
from bastion.proxy.keys import list_keys
from factories.proxy import chat_body, flow, gateway, run_hooks, run_request, run_response

PRICES = cost.builtin().with_overrides({"scripted-small": Price(input=1.0, output=2.0)})
TOKENS_100 = Budget("hundred", "agent", "day", "tokens", 100, local_allowance=1000)


def answer(model: str = "scripted-small", prompt: int = 1000, completion: int = 500) -> http.Response:
    body = {"model": model, "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}
    return http.Response.make(200, json.dumps(body), {"content-type": "application/json"})


def call(addons: list[object], key: str, path: str = "/openai/v1/chat/completions", **kw: object) -> http.HTTPFlow:
    headers = {"authorization": f"Bearer {key}"} if path.startswith("/openai") else {"x-api-key": key}
    f = run_request(addons, flow(path, chat_body(), headers=headers))
    if f.response is not None:  # answered by Bastion: mitmproxy still runs the response hooks
        return run_hooks(addons, f, ("response",))
    return run_response(addons, f, answer(**kw))  # type: ignore[arg-type]


def test_a_model_call_records_its_cost_and_key_on_its_span(tmp_path: Path) -> None:
    addons, key, spans = gateway(tmp_path, budgets=BudgetGuard("", prices=PRICES))
    call(addons, key)
    attributes = spans.get_finished_spans()[-1].attributes or {}
    assert attributes[semconv.BASTION_COST_USD] == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)
    assert attributes[semconv.BASTION_AGENT_KEY_ID] == list_keys(tmp_path / "keys.yaml")[0]["id"]


def test_a_model_without_a_price_has_tokens_but_no_cost(tmp_path: Path) -> None:
    addons, key, spans = gateway(tmp_path, budgets=BudgetGuard("", prices=PRICES))
    call(addons, key, model="scripted-unknown-to-prices")
    attributes = spans.get_finished_spans()[-1].attributes or {}
    assert semconv.BASTION_COST_USD not in attributes
    assert attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 1000


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/openai/v1/chat/completions", lambda b: (b["error"]["type"], b["error"]["code"])),
        ("/anthropic/v1/messages", lambda b: (b["error"]["type"], b["error"]["code"])),
    ],
)
def test_a_spent_budget_refuses_further_calls_with_429_in_the_callers_format(
    tmp_path: Path, path: str, error: object
) -> None:
    guard = BudgetGuard("", prices=PRICES, configured=(TOKENS_100,))
    addons, key, spans = gateway(tmp_path, budgets=guard)
    assert call(addons, key, path).response.status_code == 200  # type: ignore[union-attr]
    refused = call(addons, key, path)
    response = refused.response
    assert response is not None and response.status_code == 429
    assert response.headers["x-bastion-error"] == "budget_exceeded"
    assert response.headers["x-should-retry"] == "false"
    assert 0 < int(response.headers["retry-after"]) <= 86_400
    body = json.loads(response.content or b"")
    expected = "requests" if path.startswith("/openai") else "rate_limit_error"  # as OpenAI types its 429s
    assert error(body) == (expected, "budget_exceeded")  # type: ignore[operator]
    message = body["error"]["message"]
    assert "budget hundred is spent for agent agent-1: 1500 tokens of 100 tokens this day" in message
    attributes = spans.get_finished_spans()[-1].attributes or {}
    assert (attributes[semconv.BASTION_DECISION], attributes[semconv.BASTION_POLICY_RULE]) == (
        "deny",
        "budget:hundred",
    )


def test_budgets_for_other_agents_do_not_refuse(tmp_path: Path) -> None:
    only_others = Budget("others", "agent", "day", "tokens", 1, local_allowance=1000, only=("agent-2",))
    addons, key, _ = gateway(tmp_path, budgets=BudgetGuard("", prices=PRICES, configured=(only_others,)))
    for _ in range(3):
        assert call(addons, key).response.status_code == 200  # type: ignore[union-attr]


def test_a_call_the_policy_denies_is_not_charged_nor_refused_by_the_budget(tmp_path: Path) -> None:
    guard = BudgetGuard("", prices=PRICES, configured=(TOKENS_100,))
    addons, key, _ = gateway(tmp_path, budgets=guard)
    f = run_request(addons, flow(body=chat_body("scripted-large"), headers={"authorization": f"Bearer {key}"}))
    assert f.response is not None and f.response.headers["x-bastion-error"] == "policy_denied"
    assert guard.charges == []


def sse(data: object) -> bytes:
    return b"data: " + (data if isinstance(data, bytes) else json.dumps(data).encode()) + b"\n\n"


def test_with_budgets_a_streamed_chat_completion_is_asked_for_usage_and_counted(tmp_path: Path) -> None:
    guard = BudgetGuard("", prices=PRICES, configured=(TOKENS_100,))
    addons, key, spans = gateway(tmp_path, budgets=guard)
    f = run_request(addons, flow(body=chat_body(stream=True), headers={"authorization": f"Bearer {key}"}))
    assert f.response is None
    assert json.loads(f.request.content or b"")["stream_options"] == {"include_usage": True}
    f.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
    run_hooks(addons, f, ("responseheaders",))
    stream = f.response.stream
    assert callable(stream)
    text = sse(
        {"id": "c", "model": "scripted-small", "choices": [{"index": 0, "delta": {"content": "Hi"}}], "usage": None}
    )
    usage = sse({"id": "c", "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 10}})
    sent = [*stream(text + usage + sse(b"[DONE]")), *stream(b"")]
    run_hooks(addons, f, ("response",))
    assert b"".join(sent) == text + sse(b"[DONE]")  # the agent did not ask for usage: it gets none
    assert [c.tokens for c in guard.charges] == [30]
    attributes = spans.get_finished_spans()[-1].attributes or {}
    assert attributes[semconv.BASTION_COST_USD] == pytest.approx((20 * 1.0 + 10 * 2.0) / 1e6)


def test_without_budgets_requests_are_left_as_the_agent_sent_them(tmp_path: Path) -> None:
    addons, key, _ = gateway(tmp_path, budgets=BudgetGuard("", prices=PRICES))
    f = run_request(addons, flow(body=chat_body(stream=True), headers={"authorization": f"Bearer {key}"}))
    assert "stream_options" not in json.loads(f.request.content or b"")
