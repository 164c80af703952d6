"""Budgets in the collector: spend per budget and subject in the current window, summed from the
stored spans every ``REFRESH_SECONDS`` (what every proxy replica polls), alerts at the soft
threshold and at the limit (alert spans plus the webhook), and the limits operators raised.

Budgets come from the collector's own bastion.yaml (``bastion/budgets.py``), re-read when it
changes. A raise holds for the subject until the period resets; it is kept in the
``bastion_controls`` table (kind ``budget_raise``) and read back at start-up. Which alerts were sent
is kept in memory only: a restarted collector may send a budget's alert once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final

from bastion import budgets, semconv
from bastion.budgets import Budget
from bastion.collector import schema, spend
from bastion.collector.schema import SpanRow
from bastion.collector.store import Store
from bastion.files import ConfigError

log = logging.getLogger(__name__)
Json = dict[str, Any]
REFRESH_SECONDS: Final = 1.0
RAISE_KIND: Final = "budget_raise"
SERVICE_NAME: Final = "bastion-collector"
_LOAD: Final = """\
SELECT argMax(Body, Version) FROM {db:Identifier}.{table:Identifier} WHERE Kind = {kind:String} GROUP BY Id"""


class UnknownBudget(KeyError):
    pass


class BudgetBoard:
    def __init__(
        self,
        store: Store | None,
        policies_dir: Path,
        submit: Callable[[list[SpanRow]], Coroutine[Any, Any, None]] | None = None,
        notify: Callable[[Json], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.store = store
        self.policies_dir = policies_dir
        self.submit = submit  # writes alert spans (the batcher)
        self.notify = notify  # the webhook
        self.budgets: tuple[Budget, ...] = ()
        self.raises: dict[str, Json] = {}
        self.state: Json = {"as_of": None, "budgets": []}
        self._alerted: set[tuple[str, str, float, float, str]] = set()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    def configured(self) -> tuple[Budget, ...]:
        return self.budgets

    def reload(self) -> None:
        """The budgets of bastion.yaml (the collector's one reload mechanism calls it when the file
        changes); a bad section raises ConfigError and the last good budgets stay in force."""
        self.budgets = budgets.load(self.policies_dir)

    def budget(self, name: str) -> Budget:
        found = next((b for b in self.configured() if b.name == name), None)
        if found is None:
            raise UnknownBudget(name)
        return found

    # Persistence

    def load(self) -> None:
        """Read the budgets and the raises (blocking: call from a thread)."""
        try:
            self.reload()
        except ConfigError as e:  # no budget until a good edit: the proxies refuse by their own view
            log.error("budgets not loaded: %s", e)
        if self.store is None:
            return
        self.store.command(schema.controls_ddl(self.store.database), {})
        params = {"db": self.store.database, "table": schema.CONTROLS_TABLE, "kind": RAISE_KIND}
        for (body,) in self.store.rows(_LOAD, params):
            record = json.loads(body)
            self.raises[str(record["id"])] = record

    # The view the proxies poll

    def limit(self, budget: Budget, subject: str, window_start: float) -> tuple[float, bool]:
        found = self.raises.get(_raise_id(budget.name, subject, window_start))
        return (float(found["limit"]), True) if found else (budget.limit, False)

    def compute(self, now: float) -> Json:
        """Spend per configured budget and subject in each budget's current window (blocking)."""
        sums: dict[tuple[str, str], list[spend.Row]] = {}
        items = []
        for budget in self.configured():
            start, end = budget.window(now)
            if (budget.per, budget.period) not in sums and self.store is not None:
                sums[(budget.per, budget.period)] = spend.spend(self.store, budget.per, budget.period, start, end)
            spent = {
                r.subject: (r.usd if budget.unit == budgets.USD else float(r.tokens))
                for r in sums.get((budget.per, budget.period), [])
                if r.start == start and r.subject and budget.applies(r.subject)
            }
            raised = {
                r["subject"] for r in self.raises.values() if r["budget"] == budget.name and r["window_start"] == start
            }
            subjects = []
            for subject in sorted(set(spent) | raised):
                limit, was_raised = self.limit(budget, subject, start)
                subjects.append(
                    {"subject": subject, "spent": spent.get(subject, 0.0), "limit": limit, "raised": was_raised}
                )
            items.append(
                {
                    "name": budget.name,
                    "per": budget.per,
                    "period": budget.period,
                    "unit": budget.unit,
                    "limit": budget.limit,
                    "alert_at": budget.alert_at,
                    "local_allowance": budget.local_allowance,
                    "window_start": start,
                    "window_end": end,
                    "subjects": subjects,
                }
            )
        return {"as_of": now, "budgets": items}

    async def refresh(self) -> Json:
        async with self._lock:
            now = time.time()
            self.state = await asyncio.to_thread(self.compute, now)
            await self._alert(self.state)
            return self.state

    async def current(self) -> Json:
        """The last view, refreshed first when it is older than REFRESH_SECONDS."""
        as_of = self.state.get("as_of")
        if as_of is None or time.time() - float(as_of) > REFRESH_SECONDS:
            return await self.refresh()
        return self.state

    # Alerts

    async def _alert(self, state: Json) -> None:
        for item in state["budgets"]:
            for s in item["subjects"]:
                level = None
                if s["spent"] >= s["limit"]:
                    level = semconv.ALERT_BUDGET_EXCEEDED
                elif s["spent"] >= s["limit"] * item["alert_at"]:
                    level = semconv.ALERT_BUDGET_SOFT
                if level is None:
                    continue
                key = (item["name"], s["subject"], item["window_start"], s["limit"], level)
                if key in self._alerted:
                    continue
                # Past the limit, the soft threshold's alert would say less: it is not sent after.
                self._alerted.update({key, (*key[:4], semconv.ALERT_BUDGET_SOFT)})
                await self._send(item, s, level)

    async def _send(self, item: Json, s: Json, level: str) -> None:
        unit = item["unit"]

        def shown(value: float) -> str:
            return f"${value:.4f}" if unit == budgets.USD else f"{value:.0f} tokens"

        what = "is spent" if level == semconv.ALERT_BUDGET_EXCEEDED else f"passed {item['alert_at']:.0%}"
        message = (
            f"Budget {item['name']} {what} for {item['per']} {s['subject']}: {shown(s['spent'])} of "
            f"{shown(s['limit'])} this {item['period']}."
        )
        if level == semconv.ALERT_BUDGET_EXCEEDED:
            command = f"bastion budgets raise {item['name']} {s['subject']}"
            message += f" Its model calls are refused until the period resets or `{command}`."
        attributes = {
            semconv.BASTION_ALERT_TYPE: level,
            semconv.BASTION_ALERT_MESSAGE: message,
            semconv.BASTION_BUDGET_NAME: item["name"],
            semconv.BASTION_BUDGET_SUBJECT: s["subject"],
        }
        if item["per"] == "agent":
            attributes[semconv.BASTION_AGENT_ID] = s["subject"]
        if self.submit is not None:
            await self.submit([span_row(f"budget {level.removeprefix('budget_')}", attributes)])
        if self.notify is not None:
            body = {"text": f"Bastion: {message}", "alert": {"type": level, **item, "subjects": [s]}}
            task = asyncio.create_task(self.notify(body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # Raises

    async def raise_limit(
        self, name: str, subject: str, to: float | None, by: float | None, reason: str, who: Json
    ) -> Json:
        """Raise ``subject``'s limit of budget ``name`` until the period resets: to ``to``, or by ``by``."""
        budget = self.budget(name)
        now = time.time()
        start, end = budget.window(now)
        current, _ = self.limit(budget, subject, start)
        limit = float(to) if to is not None else current + float(by or 0)
        record: Json = {
            "id": _raise_id(name, subject, start),
            "budget": name,
            "subject": subject,
            "window_start": start,
            "window_end": end,
            "limit": limit,
            "previous_limit": current,
            "unit": budget.unit,
            "by": who["name"],
            "reason": reason,
            "created": now,
        }
        self.raises[record["id"]] = record
        if self.store is not None:
            row = [RAISE_KIND, record["id"], time.time_ns(), json.dumps(record)]
            await asyncio.to_thread(
                self.store.insert_rows, schema.CONTROLS_TABLE, [row], ["Kind", "Id", "Version", "Body"]
            )
        self.state = {**self.state, "as_of": None}  # the next poll sees the raise
        return record

    # Lifecycle

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                if self.configured():
                    await self.refresh()
            except Exception:
                log.exception("could not sum budgets")
            await asyncio.sleep(REFRESH_SECONDS)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._tasks):
            task.cancel()


def _raise_id(name: str, subject: str, window_start: float) -> str:
    return f"{name}|{subject}|{int(window_start)}"


def span_row(name: str, attributes: dict[str, str]) -> SpanRow:
    """An event of the collector's own, as a span (alerts)."""
    now = time.time_ns()
    return SpanRow(
        now, secrets.token_hex(16), secrets.token_hex(8), "", "", name, "Internal", SERVICE_NAME,
        {"service.name": SERVICE_NAME}, "bastion.collector", "", attributes, 0, "Unset", "",
        [], [], [], [], [], [], [],
    )  # fmt: skip
