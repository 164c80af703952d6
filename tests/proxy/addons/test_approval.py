"""HoldForApproval: the one place reviews are held or refused; a held call goes on only under an
approval of that exact call."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bastion.approval_config import ApprovalConfig, call_digest
from bastion.proxy.addons.approval import MISMATCH_CODE, HoldForApproval
from bastion.proxy.addons.authorization import Authorize
from bastion.proxy.classify import classify, mcp_call
from bastion.proxy.control import Control
from bastion.proxy.decision import REVIEW_CODE, Decision, Effect, PolicyRequest
from bastion.proxy.hold import Hold
from bastion.proxy.keys import Identity
from bastion.proxy.policy import PolicyEngine
from bastion.proxy.state import state
from factories.proxy import chat_body, flow, policies_dir

ARGS = {"amount": 800, "recipient": "carol@example.com"}
REQUEST = PolicyRequest("agent-1", "assistant", "tool:send_money", "call", ARGS)


class Collector(Control):
    """Answers as the collector would once an approver decided: the record it is given."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__("http://collector.invalid", ApprovalConfig(enabled=True))
        self.record = record

    async def create(self, context: dict[str, Any]) -> dict[str, Any]:
        return {"id": "a1", "status": "approved", "approver": "bob", **self.record}


def held(record: dict[str, Any]) -> tuple[list[str], list[bool], Any]:
    answers: list[str] = []
    resumed: list[bool] = []
    f = flow("/mcp/tools")
    st = state(f)
    st.identity = Identity("agent-1", "assistant", "k1")
    st.call = mcp_call("tools/call", "send_money", "tools.test", "/mcp", "POST")
    review = Decision(Effect.REVIEW, "large-payments-need-approval", "held", "v1")

    def answer(refusal: Decision, message: str, code: str) -> None:
        st.decision = refusal
        answers.append(code)

    st.hold = Hold(REQUEST, review, answer, lambda: resumed.append(True))
    asyncio.run(HoldForApproval(Collector(record)).request(f))
    return answers, resumed, st


def test_an_approval_of_this_very_call_lets_it_go_on() -> None:
    answers, resumed, st = held({"call_digest": call_digest("agent-1", "tool:send_money", "call", ARGS)})
    assert resumed == [True] and answers == [] and st.decision.effect is Effect.ALLOW


@pytest.mark.parametrize(
    "digest",
    [
        call_digest("agent-1", "tool:send_money", "call", {**ARGS, "amount": 10_000}),
        call_digest("agent-2", "tool:send_money", "call", ARGS),
        None,
    ],
)
def test_an_approval_of_another_call_is_refused(digest: str | None) -> None:
    answers, resumed, st = held({"call_digest": digest})
    assert answers == [MISMATCH_CODE] and resumed == [] and st.decision.effect is Effect.DENY


REVIEW_RULES = "p, role:assistant, model:scripted-*, chat, review, models-need-approval\n"


@pytest.mark.parametrize("approvals", [None, ApprovalConfig(enabled=False)])
def test_a_decider_leaves_a_review_and_without_approvals_the_hold_addon_refuses_it(
    tmp_path: Path, approvals: ApprovalConfig | None
) -> None:
    f = flow(body=chat_body())
    st = state(f)
    st.identity = Identity("agent-1", "assistant", "k1")
    st.call, st.format = classify("openai", "POST", "upstream.test", "/v1/chat/completions", chat_body(), 9100)
    Authorize(PolicyEngine(policies_dir(tmp_path, REVIEW_RULES))).request(f)
    assert f.response is None and st.hold is not None and st.decision is not None
    assert st.decision.effect is Effect.REVIEW  # left for the hold addon, not refused by the decider
    control = None if approvals is None else Control("http://collector.invalid", approvals)
    asyncio.run(HoldForApproval(control).request(f))
    assert f.response is not None and f.response.status_code == 403
    assert f.response.headers["x-bastion-error"] == REVIEW_CODE
    assert st.decision.effect is Effect.REVIEW and st.decision.rule == "models-need-approval" and st.hold is None
