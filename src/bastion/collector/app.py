"""The collector service: OTLP/HTTP trace intake, the span store, and the audit and trace API.

Every error answers with JSON, ``{"error": {"message": ...}}``, whatever route raised it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Final

import yaml
from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from bastion import approval_config
from bastion.collector import (
    approvals_api,
    audit_api,
    budgets_api,
    operators_api,
    otlp,
)
from bastion.collector.approvals import Board
from bastion.collector.audit_store import open_audit
from bastion.collector.auth import OtlpSender, Viewer
from bastion.collector.batcher import Batcher, Refused
from bastion.collector.budgets import BudgetBoard
from bastion.collector.limits import BodyLimit
from bastion.collector.metrics import CollectorMetrics, CountRequests
from bastion.collector.metrics import router as metrics_router
from bastion.collector.otlp import OtlpError
from bastion.collector.responses import COMMON, errors
from bastion.collector.schema import SpanRow
from bastion.collector.sealing import Sealer
from bastion.collector.store import Store
from bastion.collector.views import MAX_LIMIT, AuditFilters, Json
from bastion.collector.webhook import notifier, post
from bastion.listen import serve_asgi
from bastion.operators import Credentials
from bastion.proxy.keys import KeyStore
from bastion.reload import Reloader, when_changed
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
router = APIRouter(responses=errors(*COMMON))


@router.post("/v1/traces", responses=errors(415))
async def export_traces(request: Request, collector: CollectorDep, sender: OtlpSender) -> Response:
    """OTLP/HTTP: acknowledged once the spans are in the store. Bastion's own spans come with the proxy
    credential; spans an agent exports with its key are stored as agent-supplied."""
    media = otlp.media_type(request.headers.get("content-type"))
    body = await request.body()  # at most otlp.MAX_BODY_BYTES: BodyLimit answered 413 otherwise
    rows = await asyncio.to_thread(_decode, body, media, request.headers.get("content-encoding"))
    if isinstance(sender, str):
        rows = otlp.agent_supplied(rows, sender)
    source = "agent" if isinstance(sender, str) else "bastion"
    request.app.state.metrics.spans_received.labels(source=source).inc(len(rows))
    await collector.batcher.submit(rows)
    return Response(otlp.response(media), media_type=media)


@router.get("/api/audit")
async def audit(
    request: Request,
    collector: CollectorDep,
    _: Viewer,
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


@router.get("/api/overview")
async def overview(
    collector: CollectorDep,
    _: Viewer,
    since: str | None = None,
    until: str | None = None,
    step: Annotated[int, Query(ge=1, le=86_400 * 31, description="seconds per time bucket")] = 300,
) -> Json:
    """Aggregates for the dashboard's charts between ``since`` (default: a day ago) and ``until``
    (default: now): decisions per ``step`` by effect, the top rules, and calls, denials and holds per agent."""
    end = _datetime("until", until) or datetime.now(UTC)
    start = _datetime("since", since) or end - timedelta(days=1)
    return await asyncio.to_thread(collector.store.overview, start, end, step)


@router.get("/api/alerts")
async def alerts(collector: CollectorDep, _: Viewer, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50) -> Json:
    """Alert events, newest first: rejected policy edits and the like."""
    return {"items": await asyncio.to_thread(collector.store.alerts, limit)}


@router.get("/api/traces/{trace_id}", responses=errors(404))
async def trace(trace_id: str, collector: CollectorDep, _: Viewer) -> Json:
    """Every span of one trace, from any service, oldest first."""
    if not _TRACE_ID.fullmatch(trace_id):
        raise HTTPException(400, f"Trace id {trace_id[:64]!r} is not 32 hex characters.")
    spans = await asyncio.to_thread(collector.store.trace, trace_id.lower())
    if not spans:
        raise HTTPException(404, f"No spans for trace {trace_id.lower()}.")
    return {"trace_id": trace_id.lower(), "spans": spans}


@router.get("/healthz", responses=errors(503))
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

        batcher = Batcher(metrics.writer(write), batch_rows=settings.batch_rows, flush_interval=settings.flush_interval)
        batcher.start()
        app.state.collector = Collector(store, batcher)
        approvals = Approvals(approval_config.load(settings.policies_dir))
        webhook = approvals.config.webhook_url
        sealer = await asyncio.to_thread(Sealer.open, settings.approvals_key_path)
        app.state.board = board = Board(
            store, notifier(webhook) if webhook else None, scope_for=approvals.scope_for, sealer=sealer
        )
        await asyncio.to_thread(board.load)

        async def alert(body: Json) -> None:
            if webhook:
                await post(webhook, body, f"budget alert {body['alert']['name']}")

        app.state.budgets = budgets = BudgetBoard(store, settings.policies_dir, batcher.submit, alert)
        await asyncio.to_thread(budgets.load)
        budgets.start()
        metrics.buffered.set_function(lambda: batcher.buffered)
        metrics.approvals_pending.set_function(lambda: sum(a["status"] == "pending" for a in board.approvals.values()))
        app.state.credentials = Credentials(settings.operators_path, settings.proxy_token)
        if settings.proxy_token is None:
            log.warning("No proxy credential (BASTION_PROXY_TOKEN): no proxy can send spans or hold calls")
        app.state.agent_keys = agent_keys = _agent_keys(settings.keys_path)
        reloader = _reloader(settings.policies_dir, approvals, agent_keys, budgets)
        reloader.start()
        try:
            yield
        finally:
            reloader.stop()
            await budgets.aclose()
            await board.aclose()
            await batcher.close()
            await asyncio.to_thread(store.close)
            log.info("Span store closed")

    app = FastAPI(title="Bastion collector", lifespan=lifespan)
    app.state.metrics = metrics = CollectorMetrics()
    app.include_router(router)
    app.include_router(metrics_router)
    app.include_router(audit_api.router)
    app.include_router(approvals_api.router)
    app.include_router(budgets_api.router)
    app.include_router(operators_api.router)
    app.add_middleware(BodyLimit, default=settings.max_json_bytes, limits={"/v1/traces": otlp.MAX_BODY_BYTES})
    app.add_middleware(CountRequests, metrics=metrics)  # outermost: counts 413s too
    app.add_exception_handler(OtlpError, _otlp_error)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(ClickHouseError, _store_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    return app


def serve(settings: CollectorSettings, sock: socket.socket, log_level: str = "warning") -> None:
    """Run the collector on ``sock`` (bound to its port) until SIGINT or SIGTERM; buffered spans are
    written before exit."""
    serve_asgi(create_app(settings), sock, log_level)


@dataclass
class Approvals:
    """The approvals settings in force, from the collector's own bastion.yaml (never from the
    request that holds the call); replaced when the file changes (see ``_reloader``)."""

    config: approval_config.ApprovalConfig

    def scope_for(self, rule: str) -> Json | None:
        return self.config.for_rule(rule).scope.as_json()


def _reloader(policies_dir: Path, approvals: Approvals, agent_keys: KeyStore | None, budgets: BudgetBoard) -> Reloader:
    """The collector's subscriptions to the one reload mechanism: bastion.yaml's approvals and
    budgets sections and the agent keys. A bad edit keeps the last good version; the Reloader logs it (the store
    itself takes no alert span from here). Operators' tokens are checked on each use instead, so
    that a removed operator is refused at once."""

    def load_sections() -> None:
        found = approval_config.load(policies_dir)
        budgets.reload()
        approvals.config = found

    reloader = Reloader(on_rejected=lambda message, alert: None)
    reloader.subscribe("bastion.yaml", when_changed(lambda: [policies_dir / "bastion.yaml"], load_sections))
    if agent_keys is not None:
        reloader.subscribe("keys", agent_keys.check)
    return reloader


def _agent_keys(path: Path) -> KeyStore | None:
    """Agent keys, for spans agents export themselves; without a readable keys file, none are accepted."""
    try:
        return KeyStore(path, check_on_lookup=False) if path.exists() else None  # the Reloader checks it
    except (OSError, ValueError, yaml.YAMLError) as e:
        log.error("Agent keys not loaded from %s (agents cannot export spans): %s", path, e)
        return None


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
