"""The audit chain API: pages of chained records, heads and anchors, the proxies' public keys,
the decision spans the audit view shows, and span counts.

``bastion audit verify`` and ``bastion audit export`` read the chain through it (only the
collector opens the store) and check every signature themselves; ``/api/spans/stats`` lets tests
and operators check exactly-once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query, Request
from starlette.exceptions import HTTPException

from bastion.collector.audit_store import RECORD, AuditStore
from bastion.collector.auth import Viewer
from bastion.collector.responses import COMMON, errors
from bastion.collector.views import iso_time, unix_nanos

router = APIRouter(responses=errors(*COMMON))
MAX_PAGE: Final = 5000
_INT64_MAX: Final = 2**63 - 1


def _audit(request: Request) -> AuditStore:
    audit: AuditStore = request.app.state.audit
    return audit


def _nanos(name: str, value: str | None, default: int) -> int:
    if not value:
        return default
    try:
        return max(0, min(_INT64_MAX, unix_nanos(datetime.fromisoformat(value))))
    except ValueError:
        raise HTTPException(
            400, f"Query parameter {name!r} has value {value[:64]!r}. Not an ISO-8601 datetime."
        ) from None


@router.get("/api/audit/chain")
async def chain(
    request: Request,
    _: Viewer,
    type: Literal["record", "head", "anchor"] = RECORD,
    since: str | None = None,
    until: str | None = None,
    after_instance: str = "",
    after_seq: Annotated[int, Query(ge=0, le=_INT64_MAX)] = 0,
    after_hash: str = "",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
) -> dict[str, Any]:
    """Chain records (or heads, or anchors) in (instance, seq) order; page on with ``next``."""
    items = await asyncio.to_thread(
        _audit(request).page,
        type=type,
        since=_nanos("since", since, 0),
        until=_nanos("until", until, _INT64_MAX),
        after=(after_instance, type if after_instance else "", after_seq, after_hash),
        limit=limit,
    )
    last = items[-1] if len(items) == limit else None
    following = (
        {"after_instance": last["instance"], "after_seq": last["seq"], "after_hash": last["hash"]} if last else None
    )
    return {"items": items, "next": following}


@router.get("/api/audit/keys")
async def keys(request: Request, _: Viewer) -> dict[str, Any]:
    """Every proxy instance's public key, the first seen first (only the first of an instance is trusted)."""
    items = await asyncio.to_thread(_audit(request).keys)
    for item in items:
        item["first_seen"] = iso_time(item["first_seen"])
    return {"items": items}


@router.get("/api/audit/spans")
async def decision_spans(
    request: Request,
    _: Viewer,
    since: str | None = None,
    until: str | None = None,
    after_timestamp: Annotated[int, Query(ge=0, le=_INT64_MAX)] = 0,
    after_trace_id: str = "",
    after_span_id: str = "",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
) -> dict[str, Any]:
    """The spans the audit view shows (they carry a decision), oldest first, with every attribute;
    page on with ``next``. ``timestamp`` and ``duration`` are nanoseconds."""
    spans = await asyncio.to_thread(
        _audit(request).decision_spans,
        since=_nanos("since", since, 0),
        until=_nanos("until", until, _INT64_MAX),
        after=(after_timestamp, after_trace_id, after_span_id),
        limit=limit,
    )
    last = spans[-1] if len(spans) == limit else None
    following = (
        {"after_timestamp": last.timestamp, "after_trace_id": last.trace_id, "after_span_id": last.span_id}
        if last
        else None
    )
    return {"items": [dataclasses.asdict(s) for s in spans], "next": following}


@router.get("/api/spans/stats")
async def span_stats(request: Request, _: Viewer, service: str = "") -> dict[str, Any]:
    """Stored spans, distinct (TraceId, SpanId) pairs, and up to 100 that are stored twice."""
    return await asyncio.to_thread(_audit(request).span_stats, service)
