"""The collector service: OTLP/HTTP trace intake, the span store, and the audit and trace API.

Every error answers with JSON, ``{"error": {"message": ...}}``, whatever route raised it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final

import uvicorn
from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from bastion import approval_config
from bastion.approvers import FILE_NAME as APPROVERS_FILE
from bastion.approvers import Approvers
from bastion.collector import (
    approvals_api,
    audit_api,
    otlp,
)
from bastion.collector.approvals import Board
from bastion.collector.audit_store import open_audit
from bastion.collector.batcher import Batcher, Refused
from bastion.collector.otlp import OtlpError
from bastion.collector.schema import SpanRow
from bastion.collector.store import Store
from bastion.collector.views import MAX_LIMIT, AuditFilters, Json
from bastion.collector.webhook import notifier
from bastion.settings import CollectorSettings, redact_url

log = logging.getLogger(__name__)

_TRACE_ID: Final = re.compile(r"[0-9a-fA-F]{32}")
_MAX_OFFSET: Final = 2**31


@dataclass
class Collector:
    """What the routes use, opened and closed by the app's lifespan."""

    store: Store
    batcher: Batcher[SpanRow]


def _collector(request: Request) -> Collector:
    collector: Collector = request.app.state.collector
    return collector


CollectorDep = Annotated[Collector, Depends(_collector)]
router = APIRouter()


@router.post("/v1/traces")
async def export_traces(request: Request, collector: CollectorDep) -> Response:
    """OTLP/HTTP: acknowledged once the spans are in the store."""
    media = otlp.media_type(request.headers.get("content-type"))
    body = await _read_body(request)
    rows = await asyncio.to_thread(_decode, body, media, request.headers.get("content-encoding"))
    await collector.batcher.submit(rows)
    return Response(otlp.response(media), media_type=media)


@router.get("/api/audit")
async def audit(
    request: Request,
    collector: CollectorDep,
    agent: str | None = None,
    decision: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    offset: Annotated[int, Query(ge=0, le=_MAX_OFFSET)] = 0,
) -> Json:
    """Spans that carry a governance decision, newest first; ``verified`` says whether each matches
    its signed audit record."""
    filters = AuditFilters(
        agent=agent or None,
        decision=decision or None,
        kind=kind or None,
        since=_datetime("since", since),
        until=_datetime("until", until),
        limit=limit,
        offset=offset,
    )
    return await asyncio.to_thread(collector.store.audit, filters, request.app.state.audit.span_problems)


@router.get("/api/alerts")
async def alerts(collector: CollectorDep, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50) -> Json:
    """Alert events, newest first: rejected policy edits and the like."""
    return {"items": await asyncio.to_thread(collector.store.alerts, limit)}


@router.get("/api/traces/{trace_id}")
async def trace(trace_id: str, collector: CollectorDep) -> Json:
    """Every span of one trace, from any service, oldest first."""
    if not _TRACE_ID.fullmatch(trace_id):
        raise HTTPException(400, f"Trace id {trace_id[:64]!r} is not 32 hex characters.")
    spans = await asyncio.to_thread(collector.store.trace, trace_id.lower())
    if not spans:
        raise HTTPException(404, f"No spans for trace {trace_id.lower()}.")
    return {"trace_id": trace_id.lower(), "spans": spans}


@router.get("/healthz")
async def healthz(collector: CollectorDep) -> JSONResponse:
    if await asyncio.to_thread(collector.store.ping):
        return JSONResponse({"status": "ok"})
    return _error(503, "The span store does not answer.")


def create_app(settings: CollectorSettings) -> FastAPI:
    """The collector app; its lifespan opens the store and the batcher and closes them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await asyncio.to_thread(_open_store, settings)
        audit = await asyncio.to_thread(
            open_audit,
            store,
            traces_ttl_days=settings.traces_ttl_days,
            audit_ttl_days=settings.audit_ttl_days,
            cluster=settings.cluster,
        )
        app.state.audit = audit

        async def write(rows: list[SpanRow]) -> None:
            await asyncio.to_thread(audit.insert_spans, rows)  # deduplicates, then stores

        batcher = Batcher(write, batch_rows=settings.batch_rows, flush_interval=settings.flush_interval)
        batcher.start()
        app.state.collector = Collector(store, batcher)
        webhook = approval_config.load(settings.policies_dir).webhook_url
        app.state.board = board = Board(store, notifier(webhook) if webhook else None)
        await asyncio.to_thread(board.load)
        app.state.approvers = Approvers(settings.policies_dir / APPROVERS_FILE)
        try:
            yield
        finally:
            await board.aclose()
            await batcher.close()
            await asyncio.to_thread(store.close)
            log.info("Span store closed")

    app = FastAPI(title="Bastion collector", lifespan=lifespan)
    app.include_router(router)
    app.include_router(audit_api.router)
    app.include_router(approvals_api.router)
    app.add_exception_handler(OtlpError, _otlp_error)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(ClickHouseError, _store_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    return app


def serve(settings: CollectorSettings) -> None:
    """Run the collector until SIGINT or SIGTERM; buffered spans are written before exit."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, access_log=False)


def _open_store(settings: CollectorSettings) -> Store:
    where = redact_url(settings.dsn)
    if settings.clickhouse_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    log.info("Opening span store %s, database %s", where, settings.database)
    try:
        store = Store.open(settings)
        if not settings.cluster:  # a cluster's tables come from audit_store.open_audit
            store.migrate()
    except Exception as e:
        log.error("Cannot open the span store %s (is another process using it?): %s", where, e)
        raise
    return store


def _decode(body: bytes, media: str, encoding: str | None) -> list[SpanRow]:
    return otlp.rows(otlp.parse(otlp.decompress(body, encoding), media))


async def _read_body(request: Request) -> bytes:
    limit = otlp.MAX_BODY_BYTES
    too_large = OtlpError(f"Body is larger than {limit} bytes.", status=413)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _datetime(name: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(
            400, f"Query parameter {name!r} has value {value[:64]!r}. Not an ISO-8601 datetime."
        ) from None


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status, headers=headers)


async def _otlp_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OtlpError)
    return _error(exc.status, exc.message)


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    return _error(exc.status, exc.message, {"Retry-After": "1"})


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("Span store query failed: %s", exc)
    return _error(503, "The span store is unavailable. Retry later.", {"Retry-After": "1"})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    if message in ("Not Found", "Method Not Allowed"):  # raised by routing, not by a route
        message = f"{message}: {request.method} {request.url.path}"
    return _error(exc.status_code, message, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    where, name = (first["loc"][0], first["loc"][-1]) if first.get("loc") else ("request", "")
    value = first.get("input")
    return _error(400, f"{str(where).capitalize()} parameter {name!r} has value {value!r}. {first['msg']}.")


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("Unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, "Internal error.")
