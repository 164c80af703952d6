"""Authorize: model and HTTP calls are decided by the policy; refusals are 403s naming the rule in the
caller's format; a review is held for a human when approvals are on, else refused with its own code."""

import json
from pathlib import Path

import pytest
from mitmproxy import http

from bastion.proxy.decision import Effect, allow
from bastion.proxy.state import state
from factories.addons import authorize, call_flow, deciders_without_approvals, engine, run
from factories.proxy import chat_body, run_hooks

REVIEW_MODELS = "p, role:assistant, model:*, *, review, models-need-approval,\n"


def decided(tmp_path: Path, f: http.HTTPFlow, rules: str | None = None) -> http.HTTPFlow:
    return run(authorize(engine(tmp_path, rules)), f, "request")


def test_an_allowed_call_is_left_to_go_on_with_its_rule(tmp_path: Path) -> None:
    f = decided(tmp_path, call_flow())
    decision = state(f).decision
    assert f.response is None and decision is not None and decision.allowed
    assert decision.rule == "assistant-scripted-models" and decision.policy_version


@pytest.mark.parametrize(
    ("path", "model", "rule"),
    [
        ("/openai/v1/chat/completions", "scripted-large", "no-large-models"),
        ("/anthropic/v1/messages", "scripted-large", "no-large-models"),
        ("/openai/v1/chat/completions", "some-unlisted-model", "default-deny"),
    ],
)
def test_a_denied_call_is_a_403_naming_the_rule_in_the_callers_format(
    tmp_path: Path, path: str, model: str, rule: str
) -> None:
    f = decided(tmp_path, call_flow(path, chat_body(model)))
    decision = state(f).decision
    assert decision is not None and decision.effect is Effect.DENY and decision.rule == rule
    assert f.response is not None and f.response.status_code == 403
    assert f.response.headers["x-bastion-error"] == "policy_denied"
    body = json.loads(f.response.content or b"")
    assert f"model:{model}" in body["error"]["message"]
    assert ("type" in body) == path.startswith("/anthropic/")  # Anthropic's shape, else OpenAI's


def test_a_review_without_approvals_is_refused_with_its_own_code(tmp_path: Path) -> None:
    f = run_hooks(deciders_without_approvals(engine(tmp_path, REVIEW_MODELS)), call_flow(), ("request",))
    decision = state(f).decision
    assert decision is not None and decision.effect is Effect.REVIEW
    assert f.response is not None and f.response.status_code == 403
    assert f.response.headers["x-bastion-error"] == "approval_required"


def test_a_review_is_left_held_for_a_human_with_what_was_asked(tmp_path: Path) -> None:
    f = decided(tmp_path, call_flow("/anthropic/v1/messages"), REVIEW_MODELS)
    hold = state(f).hold
    assert f.response is None and hold is not None and hold.decision.effect is Effect.REVIEW
    assert hold.decision.rule == "models-need-approval" and state(f).decision == hold.decision
    assert (hold.request.agent_id, hold.request.obj, hold.request.act) == ("agent-1", "model:scripted-small", "chat")


def test_a_call_already_decided_is_not_decided_again(tmp_path: Path) -> None:
    earlier = allow("mcp-decided", "decided by McpGovernance")
    f = decided(tmp_path, call_flow(body=chat_body("scripted-large"), decision=earlier))
    assert state(f).decision is earlier and f.response is None


def test_unidentified_unclassified_or_answered_calls_are_left_undecided(tmp_path: Path) -> None:
    addon = authorize(engine(tmp_path))
    unidentified, unclassified, answered = call_flow(identity=None), call_flow(), call_flow()
    state(unclassified).call = None
    answered.kill()
    for f in (unidentified, unclassified, answered):
        run(addon, f, "request")
        assert state(f).decision is None and f.response is None  # Forward refuses undecided calls
