"""Suspension refuses every call of a suspended agent; Guidance adds a human's guidance to the agent's
next allowed model call, once."""

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from mitmproxy import http

from bastion import semconv
from bastion.proxy.decision import Effect, allow, deny
from bastion.proxy.keys import Identity
from bastion.proxy.state import state
from factories.addons import FakeCollector, call_flow, guidance, run, suspension

ALLOWED = allow("assistant-scripted-models", "allowed")


def test_a_suspended_agents_calls_are_refused_with_the_reason() -> None:
    f = run(suspension(FakeCollector({"agent-1": "leaked a key"})), call_flow("/anthropic/v1/messages"), "request")
    assert f.response is not None and f.response.status_code == 403
    assert f.response.headers["x-bastion-error"] == "agent_suspended"
    body = json.loads(f.response.content or b"")
    assert body["type"] == "error" and "leaked a key" in body["error"]["message"]
    decision = state(f).decision
    assert decision is not None and decision.effect is Effect.DENY and decision.rule == "agent-suspended"


def test_a_suspension_without_a_reason_says_so() -> None:
    f = run(suspension(FakeCollector({"agent-1": ""})), call_flow(), "request")
    assert f.response is not None and "no reason given" in (f.response.text or "")


def test_other_agents_and_answered_calls_are_left_alone() -> None:
    addon = suspension(FakeCollector({"agent-2": "misbehaved"}))
    other = run(addon, call_flow(), "request")
    answered = call_flow(identity=Identity("agent-2", "assistant", "k2"))
    answered.kill()
    run(addon, answered, "request")
    assert other.response is None and answered.response is None
    assert state(other).decision is None and state(answered).decision is None


def guided(claim: Any, f: http.HTTPFlow | None = None, waiting: str = "g1") -> tuple[http.HTTPFlow, FakeCollector]:
    control = FakeCollector()
    control.guidance = {"agent-1": [waiting]}
    control.claims[waiting] = claim
    f = f or call_flow(decision=ALLOWED)
    return run(guidance(control), f, "request"), control


def test_guidance_is_added_to_the_next_allowed_model_call_once() -> None:
    f, control = guided({"text": "Stop retrying the payment."})
    sent = json.loads(f.request.content or b"")
    assert sent["messages"][-1]["role"] == "system" and "Stop retrying the payment." in sent["messages"][-1]["content"]
    assert state(f).body == sent and f.response is None
    assert state(f).attributes[semconv.BASTION_GUIDANCE_ID] == "g1"
    assert state(f).attributes[semconv.BASTION_GUIDANCE_TEXT] == "Stop retrying the payment."
    assert control.claimed == ["g1"] and control.guidance["agent-1"] == []


@pytest.mark.parametrize("claim", [None, httpx.ConnectError("collector down")], ids=["claimed elsewhere", "error"])
def test_unclaimed_guidance_leaves_the_call_unchanged_and_going_on(claim: Any) -> None:
    before = call_flow(decision=ALLOWED)
    content = before.request.content
    f, control = guided(claim, before)
    assert control.claimed == ["g1"] and f.request.content == content and f.response is None
    assert semconv.BASTION_GUIDANCE_ID not in state(f).attributes


@pytest.mark.parametrize(
    "make",
    [
        lambda: call_flow(decision=deny("no-large-models", "denied")),
        lambda: call_flow(),  # undecided
        lambda: call_flow("/openai/v1/embeddings", {"model": "scripted-small", "input": "hi"}, decision=ALLOWED),
    ],
    ids=["denied", "undecided", "embeddings"],
)
def test_guidance_waits_for_an_allowed_call_that_takes_instructions(make: Callable[[], http.HTTPFlow]) -> None:
    before = make()
    content = before.request.content
    f, control = guided({"text": "Be brief."}, before)
    assert control.claimed == [] and f.request.content == content and control.guidance["agent-1"] == ["g1"]
