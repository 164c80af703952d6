"""The approvals board in memory: decisions wake waiters, grants cover later calls, guidance goes once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bastion.approval_config import call_digest
from bastion.collector.approvals import Board, Conflict
from bastion.collector.sealing import Sealer

ALICE = {"id": "a1", "name": "alice"}


def context(**extra: Any) -> dict[str, Any]:
    return {"agent_id": "agent-1", "rule": "big", "target": "tool:send_money", "action": "call", **extra}


def test_a_decision_wakes_the_waiter_and_is_final() -> None:
    async def scenario() -> None:
        board = Board(None)
        record = await board.create(context())
        waiter = asyncio.create_task(board.wait(record["id"], 10))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await board.decide(record["id"], False, "no", ALICE)
        decided = await asyncio.wait_for(waiter, 1)
        assert (decided["status"], decided["approver"], decided["decision_reason"]) == ("denied", "alice", "no")
        with pytest.raises(Conflict):
            await board.decide(record["id"], True, "", ALICE)
        assert (await board.close(record["id"], "timeout"))["status"] == "denied"  # a decision stays

    asyncio.run(scenario())


def test_a_scoped_approval_covers_the_next_calls_of_that_agent_and_rule() -> None:
    async def scenario() -> None:
        scopes = {"big": {"calls": 2, "minutes": None}}
        board = Board(None, scope_for=scopes.get)
        first = await board.create(context())
        await board.decide(first["id"], True, "ok for this task", ALICE)
        covered = [await board.create(context()) for _ in range(2)]
        assert [c["status"] for c in covered] == ["approved", "approved"] and covered[0]["approver"] == "alice"
        assert (await board.create(context()))["status"] == "pending"  # used up
        assert (await board.create(context(agent_id="agent-2")))["status"] == "pending"  # another agent
        assert (await board.create(context(rule="other")))["status"] == "pending"  # another rule

    asyncio.run(scenario())


def test_guidance_is_claimed_once_and_suspension_is_listed() -> None:
    async def scenario() -> None:
        board = Board(None)
        guidance = await board.guide("agent-1", "slow down", ALICE)
        await board.suspend("agent-2", True, "loop", ALICE)
        state = board.agent_state()["agents"]
        assert state["agent-1"]["guidance"] == [{"id": guidance["id"]}] and state["agent-2"]["suspended"]
        assert (await board.claim("agent-1", guidance["id"]))["text"] == "slow down"
        with pytest.raises(Conflict):
            await board.claim("agent-1", guidance["id"])
        assert "agent-1" not in board.agent_state()["agents"]

    asyncio.run(scenario())


def test_the_scope_comes_from_configuration_never_from_the_request() -> None:
    async def scenario() -> None:
        board = Board(None, scope_for=lambda rule: None)
        first = await board.create(context(scope={"calls": 1_000_000, "minutes": 525_600}))
        assert first["scope"] is None
        await board.decide(first["id"], True, "looked harmless", ALICE)
        assert (await board.create(context()))["status"] == "pending" and not board.grants

    asyncio.run(scenario())


def test_clear_arguments_are_sealed_shown_to_approvers_and_dropped_once_decided(tmp_path: Path) -> None:
    async def scenario() -> None:
        board = Board(None, sealer=Sealer.open(tmp_path / "approvals.key"))
        clear = {"amount": 800, "recipient": "carol@example.com"}
        held = context(arguments={"amount": 800, "recipient": "<EMAIL_ADDRESS>"}, arguments_clear=clear)
        record = await board.create(held)
        assert "carol@example.com" not in json.dumps(record)  # only sealed, in memory and in the store
        assert record["call_digest"] == call_digest("agent-1", "tool:send_money", "call", clear)
        assert board.view(record, clear=True)["arguments_clear"] == clear
        assert "arguments_clear" not in board.view(record, clear=False)
        assert "arguments_sealed" not in board.view(record, clear=True)
        await board.decide(record["id"], True, "ok", ALICE)
        assert "arguments_sealed" not in record and "arguments_clear" not in board.view(record, clear=True)
        other = Sealer.open(tmp_path / "other.key")
        assert other.unseal(Sealer.open(tmp_path / "approvals.key").seal(clear)) is None
        assert oct((tmp_path / "approvals.key").stat().st_mode & 0o777) == "0o600"

    asyncio.run(scenario())
