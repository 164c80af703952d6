"""A proxy's budget decisions: the collector's view plus its own unconfirmed spend, and the local allowance
that bounds what a replica cut off from the collector can spend."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bastion.budgets import Budget
from bastion.proxy.budget_guard import (
    EXCEEDED_CODE,
    LAG_SECONDS,
    UNCONFIRMED_CODE,
    BudgetGuard,
    Charge,
    Seen,
    View,
    assess,
)
from bastion.proxy.keys import Identity

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC).timestamp()
DAY_START = datetime(2026, 12, 2, tzinfo=UTC).timestamp()
USD_10 = Budget("daily", "agent", "day", "usd", 10.0, local_allowance=1.0)
AGENT = Identity("agent-1", "assistant", "k1")


def charge(at: float, usd: float, agent: str = "agent-1") -> Charge:
    return Charge(at, agent, "assistant", "k1", 0, usd)


def view(spent: float, as_of: float = NOW - 1, start: float = DAY_START, raised: float | None = None) -> View:
    limits = {} if raised is None else {"agent-1": raised}
    return View(as_of, {"daily": Seen(start, {"agent-1": spent}, limits)})


@pytest.mark.parametrize(
    ("seen", "charges", "code"),
    [
        (view(5.0), [], None),
        (view(9.99), [], None),
        (view(10.0), [], EXCEEDED_CODE),
        (view(9.5), [charge(NOW - 0.5, 0.6)], EXCEEDED_CODE),  # own spend not yet in the view counts
        (view(9.5), [charge(NOW - 1 - LAG_SECONDS - 1, 0.6)], None),  # older: the view has it
        (view(9.5), [charge(NOW - 0.5, 0.6, agent="agent-2")], None),  # another agent's
        (view(10.0, start=DAY_START - 86_400), [], None),  # yesterday's view: a new day
        (view(12.0, raised=20.0), [], None),  # an operator raised the limit
        (view(20.0, raised=20.0), [], EXCEEDED_CODE),
        (view(0.0), [charge(NOW - 0.5, 0.5), charge(NOW - 0.2, 0.5)], UNCONFIRMED_CODE),  # allowance spent
        (View(), [charge(NOW - 3600, 0.4)], None),  # never heard from the collector
        (View(), [charge(NOW - 3600, 0.4), charge(NOW - 60, 0.6)], UNCONFIRMED_CODE),
        (View(), [charge(DAY_START - 60, 5.0)], None),  # yesterday's spend does not count today
    ],
)
def test_assess(seen: View, charges: list[Charge], code: str | None) -> None:
    refusal = assess((USD_10,), seen, charges, AGENT, NOW)
    assert (refusal.code if refusal else None) == code


def test_an_exceeded_budget_says_who_how_much_and_when_it_resets() -> None:
    refusal = assess((USD_10,), view(10.5), [], AGENT, NOW)
    assert refusal is not None and refusal.budget is USD_10
    assert refusal.message == (
        "Bastion: budget daily is spent for agent agent-1: $10.5000 of $10.0000 this day. "
        "Calls are refused until it resets (2026-12-03 00:00 UTC) or an operator raises it."
    )
    assert refusal.retry_after == 12 * 3600


@pytest.mark.parametrize("replicas", [1, 2, 5])
def test_replicas_cut_off_from_the_collector_overspend_by_at_most_their_allowances(replicas: int) -> None:
    """Each replica keeps calling until refused, every call costing $0.3, with the collector's view stuck
    at $9: the total stays under limit + replicas x (allowance + one call)."""
    guards = [BudgetGuard("", configured=(USD_10,)) for _ in range(replicas)]
    for g in guards:
        g.confirm(view(9.0, as_of=NOW - 600))
    spent = 9.0
    for g in guards:
        for i in range(1000):
            if g.check(AGENT, NOW + i) is not None:
                break
            g.charge(AGENT, 0, 0.3, NOW + i)
            spent += 0.3
    assert spent <= USD_10.limit + replicas * (USD_10.local_allowance + 0.3)
    assert all(g.check(AGENT, NOW + 2000) is not None for g in guards)


def test_a_new_view_confirms_the_charges_it_covers() -> None:
    guard = BudgetGuard("", configured=(USD_10,))
    guard.charge(AGENT, 0, 0.9, NOW - 10)
    guard.charge(AGENT, 0, 0.05, NOW)
    assert guard.check(AGENT, NOW) is None
    guard.charge(AGENT, 0, 0.05, NOW)
    assert guard.check(AGENT, NOW) is not None  # $1 unconfirmed: the allowance
    guard.confirm(view(1.0, as_of=NOW - 1))
    assert [c.usd for c in guard.charges] == [0.05, 0.05]
    assert guard.check(AGENT, NOW) is None


def test_the_view_and_unconfirmed_charges_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox" / "budgets.json"
    guard = BudgetGuard("", configured=(USD_10,), state_file=path)
    guard.confirm(view(9.0, as_of=NOW - 600, raised=12.0))
    guard.charge(AGENT, 0, 0.6, NOW - 5)
    guard.save()
    restarted = BudgetGuard("", configured=(USD_10,), state_file=path)
    assert restarted.view == guard.view and restarted.charges == guard.charges
    assert restarted.check(AGENT, NOW) is None  # $9.6 of a raised $12, $0.6 of the $1 allowance
    restarted.charge(AGENT, 0, 0.4, NOW)
    refused = restarted.check(AGENT, NOW)
    assert refused is not None and refused.code == UNCONFIRMED_CODE


def test_an_unreadable_state_file_starts_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "budgets.json"
    path.write_text("{not json")
    guard = BudgetGuard("", configured=(USD_10,), state_file=path)
    assert (guard.view, guard.charges) == (View(), [])
    assert "cannot read the last budgets view" in caplog.text
