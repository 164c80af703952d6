"""Spend and budgets.

Viewers and up: ``GET /api/spend?by=agent|role|key&period=day|week|month&since=&until=`` (cost and
tokens summed per subject and period). Proxies and viewers: ``GET /api/budgets`` (each budget's
spend per subject in the current window: what proxies enforce). Admins: ``POST
/api/budgets/{name}/raise`` (``{"subject", "to" | "by", "reason"}``): the subject's limit until the
period resets, recorded in the audit trail.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request
from starlette.exceptions import HTTPException

from bastion import semconv
from bastion.collector import spend
from bastion.collector.auth import Admin, ProxyOrViewer, Viewer
from bastion.collector.batcher import Batcher
from bastion.collector.budgets import BudgetBoard, UnknownBudget, span_row
from bastion.collector.responses import COMMON, errors
from bastion.collector.schema import SpanRow

Json = dict[str, Any]
DEFAULT_DAYS = 30
router = APIRouter(responses=errors(*COMMON))


def _board(request: Request) -> BudgetBoard:
    board: BudgetBoard = request.app.state.budgets
    return board


BudgetsDep = Annotated[BudgetBoard, Depends(_board)]


def _moment(name: str, value: str | None, default: float | None) -> float | None:
    if not value:
        return default
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise HTTPException(
            400, f"Query parameter {name!r} has value {value[:64]!r}. Not an ISO-8601 datetime."
        ) from None


@router.get("/api/spend")
async def get_spend(
    request: Request,
    _: Viewer,
    by: Literal["agent", "role", "key"] = "agent",
    period: Literal["day", "week", "month"] = "day",
    since: str | None = None,
    until: str | None = None,
) -> Json:
    """Cost in US dollars and tokens of model calls per ``by`` and ``period`` (UTC), newest first;
    ``since`` defaults to 30 days ago. ``unpriced_calls`` had no price (their cost is not counted)."""
    start = _moment("since", since, time.time() - DEFAULT_DAYS * 86_400)
    end = _moment("until", until, None)
    assert start is not None
    store = request.app.state.collector.store
    rows = await asyncio.to_thread(spend.spend, store, by, period, start, end)
    return {"by": by, "period": period, "items": [r.item(by, period) for r in rows]}


@router.get("/api/budgets")
async def get_budgets(board: BudgetsDep, _: ProxyOrViewer) -> Json:
    """Each configured budget with its spend per subject in the current window (``as_of``: when summed)."""
    return await board.current()


def _amount(body: Json, key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise HTTPException(400, f"Body field {key!r} has value {value!r}. Not a positive number.")
    return float(value)


@router.post("/api/budgets/{name}/raise", responses=errors(404))
async def raise_budget(
    request: Request, board: BudgetsDep, who: Admin, name: str, body: Annotated[Json, Body()]
) -> Json:
    """Raise one subject's limit until the period resets: ``to`` a new limit, or ``by`` an amount."""
    subject = body.get("subject")
    if not isinstance(subject, str) or not subject or len(subject) > 256:
        raise HTTPException(
            400, "Body field 'subject' is required: the agent, role or key id (at most 256 characters)."
        )
    to, by = _amount(body, "to"), _amount(body, "by")
    if (to is None) == (by is None):
        raise HTTPException(400, "Give exactly one of body fields 'to' (the new limit) and 'by' (an amount to add).")
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise HTTPException(400, f"Body field 'reason' has value {reason!r}. Not a string.")
    try:
        record = await board.raise_limit(name, subject, to, by, reason[:4000], {"id": who.id, "name": who.name})
    except UnknownBudget:
        raise HTTPException(404, f"No budget {name[:64]!r} in the collector's bastion.yaml.") from None
    batcher: Batcher[SpanRow] = request.app.state.collector.batcher
    attributes = {
        semconv.BASTION_DECISION: "raise",
        semconv.BASTION_POLICY_RULE: f"budget:{name}",
        semconv.BASTION_CALL_KIND: "intervention",
        semconv.BASTION_BUDGET_NAME: name,
        semconv.BASTION_BUDGET_SUBJECT: subject,
        semconv.BASTION_APPROVAL_APPROVER: who.name,
        semconv.BASTION_APPROVAL_REASON: (
            f"limit {record['previous_limit']} -> {record['limit']} {record['unit']}: {reason[:3900]}"
        ),
    }
    await batcher.submit([span_row("budget raised", attributes)])
    return record
