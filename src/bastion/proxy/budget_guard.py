"""A proxy's side of budgets: the collector's recent view of spend, plus what this proxy spent since.

The collector sums every replica's spend from the spans it stores and answers ``GET /api/budgets``
(spend per budget and subject in the current window, limits operators raised); each proxy polls it
every ``POLL_SECONDS``. A call is refused when

- the view's spend plus this proxy's *unconfirmed* spend reaches the limit (``budget_exceeded``), or
- this proxy's unconfirmed spend alone reaches the budget's ``local_allowance``
  (``budget_unconfirmed``): it has spent that much without the collector confirming it.

A charge is unconfirmed while it is newer than the view's ``as_of`` minus ``LAG_SECONDS`` (the time a
span takes from the call's end to the store). So a proxy cut off from the collector spends at most
its allowance (plus the calls it already let through and still in flight) before refusing, and with
N replicas a budget can be overspent by at most N x (allowance + calls in flight). docs/budgets.md
states the bound; tests/test_budgets_e2e.py tests it with the collector stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bastion import budgets
from bastion.budgets import Budget
from bastion.files import replace_text
from bastion.proxy import cost
from bastion.proxy.cost import PriceTable
from bastion.proxy.keys import Identity

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0
LAG_SECONDS = 3.0
# In the proxy's state directory: the last view and the unconfirmed charges, so that a restart while
# the collector is unreachable does not forget them.
FILE_NAME = "budgets.json"
EXCEEDED_CODE = "budget_exceeded"
UNCONFIRMED_CODE = "budget_unconfirmed"


@dataclass(frozen=True)
class Charge:
    """What one call spent, and who spent it."""

    at: float  # Unix seconds
    agent: str
    role: str
    key: str
    tokens: int
    usd: float

    def subject(self, per: str) -> str:
        return self.agent if per == "agent" else self.role if per == "role" else self.key

    def amount(self, unit: str) -> float:
        return self.usd if unit == budgets.USD else float(self.tokens)


@dataclass(frozen=True)
class Seen:
    """One budget as the collector last reported it: spend per subject, and limits operators raised."""

    window_start: float
    spent: Mapping[str, float] = field(default_factory=dict)
    raised: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class View:
    as_of: float | None = None  # Unix seconds the collector summed at; None: never heard from it
    budgets: Mapping[str, Seen] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: Any) -> View:
        seen = {
            str(b["name"]): Seen(
                float(b["window_start"]),
                {str(s["subject"]): float(s["spent"]) for s in b["subjects"]},
                {str(s["subject"]): float(s["limit"]) for s in b["subjects"] if s.get("raised")},
            )
            for b in body["budgets"]
        }
        return cls(float(body["as_of"]), seen)

    def as_json(self) -> dict[str, Any]:
        budgets_ = [
            {
                "name": name,
                "window_start": seen.window_start,
                "subjects": [
                    {"subject": s, "spent": v, "limit": seen.raised.get(s, 0.0), "raised": s in seen.raised}
                    for s, v in seen.spent.items()
                ]
                + [
                    {"subject": s, "spent": 0.0, "limit": v, "raised": True}
                    for s, v in seen.raised.items()
                    if s not in seen.spent
                ],
            }
            for name, seen in self.budgets.items()
        ]
        return {"as_of": self.as_of, "budgets": budgets_}


@dataclass(frozen=True)
class Refusal:
    """Why a call is refused: the budget (its rule), the subject, and when to retry."""

    budget: Budget
    code: str
    message: str
    retry_after: int


def subject(identity: Identity, per: str) -> str:
    return identity.agent_id if per == "agent" else identity.role if per == "role" else identity.key_id


def _amount(unit: str, value: float) -> str:
    return f"${value:.4f}" if unit == budgets.USD else f"{value:.0f} tokens"


def assess(
    configured: tuple[Budget, ...], view: View, charges: list[Charge], identity: Identity, now: float
) -> Refusal | None:
    """The first budget ``identity`` may not spend more of, or None."""
    cutoff = -math.inf if view.as_of is None else view.as_of - LAG_SECONDS
    # The caller's unconfirmed charges, found once (the list is mostly other callers' charges).
    mine = {
        per: [c for c in charges if c.at > cutoff and c.subject(per) == subject(identity, per)]
        for per in {b.per for b in configured}
    }
    for budget in configured:
        who = subject(identity, budget.per)
        if not budget.applies(who):
            continue
        start, end = budget.window(now)
        seen = view.budgets.get(budget.name)
        if seen is not None and seen.window_start != start:
            seen = None  # the view is of an earlier period
        spent = seen.spent.get(who, 0.0) if seen else 0.0
        limit = seen.raised.get(who, budget.limit) if seen else budget.limit
        unconfirmed = sum(c.amount(budget.unit) for c in mine[budget.per] if c.at >= start)
        if spent + unconfirmed >= limit:
            resets = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%d %H:%M UTC")
            message = (
                f"Bastion: budget {budget.name} is spent for {budget.per} {who}: "
                f"{_amount(budget.unit, spent + unconfirmed)} of {_amount(budget.unit, limit)} this {budget.period}. "
                f"Calls are refused until it resets ({resets}) or an operator raises it."
            )
            return Refusal(budget, EXCEEDED_CODE, message, max(1, math.ceil(end - now)))
        if unconfirmed >= budget.local_allowance:
            message = (
                f"Bastion: budget {budget.name}: this proxy spent its local allowance "
                f"({_amount(budget.unit, budget.local_allowance)}) for {budget.per} {who} without the collector "
                "confirming it; retry once the collector is reachable."
            )
            return Refusal(budget, UNCONFIRMED_CODE, message, math.ceil(POLL_SECONDS + LAG_SECONDS))
    return None


class BudgetGuard:
    """Prices and budgets from bastion.yaml (reloaded when it changes), the collector's view, and the
    charges of this proxy not yet confirmed by it."""

    def __init__(
        self,
        collector_url: str,
        policies_dir: Path | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        prices: PriceTable | None = None,
        configured: tuple[Budget, ...] = (),
        state_file: Path | None = None,
    ) -> None:
        self.base_url = collector_url.rstrip("/")
        self.headers = dict(headers or {})
        self.policies_dir = policies_dir
        self.prices = prices or cost.builtin()
        self.budgets = configured
        self.view = View()
        self.charges: list[Charge] = []
        self.state_file = state_file
        self._saved: Any = None
        if state_file is not None:
            self._load(state_file)
        if policies_dir is not None:  # a bad section raises ConfigError here: the proxy does not start
            self.prices, self.budgets = cost.load(policies_dir), budgets.load(policies_dir)
        self._poller: asyncio.Task[None] | None = None

    def read(self) -> tuple[cost.PriceTable, tuple[budgets.Budget, ...]] | None:
        """Prices and budgets from bastion.yaml, to :meth:`apply` (the proxy's one reload mechanism reads
        them when the file changes, ``proxy/watch.py``); a bad section raises ConfigError."""
        if self.policies_dir is None:
            return None
        return cost.load(self.policies_dir), budgets.load(self.policies_dir)

    def apply(self, found: tuple[cost.PriceTable, tuple[budgets.Budget, ...]] | None) -> None:
        if found is not None:
            self.prices, self.budgets = found

    def check(self, identity: Identity, now: float | None = None) -> Refusal | None:
        if not self.budgets:
            return None
        return assess(self.budgets, self.view, self.charges, identity, time.time() if now is None else now)

    def charge(self, identity: Identity, tokens: int, usd: float, now: float | None = None) -> None:
        if self.budgets:
            at = time.time() if now is None else now
            self.charges.append(Charge(at, identity.agent_id, identity.role, identity.key_id, tokens, usd))

    def confirm(self, view: View) -> None:
        """A new view from the collector: charges it covers are no longer this proxy's to count."""
        self.view = view
        if view.as_of is not None:
            cutoff = view.as_of - LAG_SECONDS
            self.charges = [c for c in self.charges if c.at > cutoff]

    # What survives a restart

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
            view = View.parse(data["view"]) if data["view"]["as_of"] is not None else View()
            charges = [Charge(**c) for c in data["charges"]]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.error("cannot read the last budgets view from %s (%s); starting without it", path, e)
            return
        self.view, self.charges = view, charges

    def _state(self) -> dict[str, Any]:
        return {"view": self.view.as_json(), "charges": [vars(c) for c in self.charges]}

    def save(self) -> None:
        """Write the view and the unconfirmed charges when they changed (blocking)."""
        if self.state_file is None:
            return
        current = self._state()
        if current != self._saved:
            replace_text(self.state_file, json.dumps(current) + "\n")
            self._saved = current

    async def _save_changes(self) -> None:
        current = self._state()  # on the event loop, which changes it; written from a thread
        if self.state_file is not None and current != self._saved:
            text = json.dumps(current) + "\n"
            await asyncio.to_thread(replace_text, self.state_file, text)
            self._saved = current

    # Lifecycle, started and stopped by the Budgets addon.

    def start(self) -> None:
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        try:
            self.save()
        except OSError as e:
            log.warning("could not save the budgets view: %s", e)

    async def _poll(self) -> None:
        failed = False
        limits = httpx.Limits(max_connections=2)
        async with httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=5.0, limits=limits) as c:
            while True:
                if self.budgets:
                    try:
                        r = await c.get("/api/budgets")
                        r.raise_for_status()
                        self.confirm(View.parse(r.json()))
                        failed = False
                    except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
                        if not failed:  # once per outage; the allowance bounds what is spent meanwhile
                            log.warning("cannot read budgets from the collector at %s: %s", self.base_url, e)
                        failed = True
                    try:
                        await self._save_changes()
                    except OSError as e:
                        log.warning("could not save the budgets view: %s", e)
                await asyncio.sleep(POLL_SECONDS)
