"""HoldForApproval: a held call goes on only under an approval of that exact call."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bastion.approval_config import ApprovalConfig, call_digest
from bastion.proxy.addons.approval import MISMATCH_CODE, HoldForApproval
from bastion.proxy.classify import mcp_call
from bastion.proxy.control import Control
from bastion.proxy.decision import Decision, Effect, PolicyRequest
from bastion.proxy.hold import Hold
from bastion.proxy.keys import Identity
from bastion.proxy.state import state
from factories.proxy import flow

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
    st.hold = Hold(REQUEST, review, lambda message, code: answers.append(code), lambda: resumed.append(True))
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
