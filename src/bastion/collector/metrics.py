"""The collector's Prometheus metrics, served at ``GET /metrics`` (a viewer credential, as the rest
of the API: Prometheus sends it with ``authorization: {credentials: ...}``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.collector.auth import Viewer

router = APIRouter()


class CollectorMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "bastion_collector_requests", "HTTP requests answered, by method and status", ["method", "code"], registry=r
        )
        self.spans_received = Counter(
            "bastion_collector_spans_received",
            "Spans received over OTLP, by source (bastion: a proxy; agent: an agent's own export)",
            ["source"],
            registry=r,
        )
        self.spans_stored = Counter("bastion_collector_spans_stored", "Spans written to the store", registry=r)
        self.store_errors = Counter(
            "bastion_collector_store_errors", "Failed writes to the store (senders were answered 503)", registry=r
        )
        self.buffered = Gauge("bastion_collector_buffered_spans", "Spans waiting for the next write", registry=r)
        self.approvals_pending = Gauge(
            "bastion_collector_approvals_pending", "Held calls waiting for a human", registry=r
        )

    def writer[T](self, write: Callable[[list[T]], Awaitable[None]]) -> Callable[[list[T]], Awaitable[None]]:
        """``write`` counting the rows stored and the writes that failed."""

        async def counted(rows: list[T]) -> None:
            try:
                await write(rows)
            except Exception:
                self.store_errors.inc()
                raise
            self.spans_stored.inc(len(rows))

        return counted


class CountRequests:
    """ASGI middleware: every HTTP answer by method and status code."""

    def __init__(self, app: ASGIApp, metrics: CollectorMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(method=scope["method"], code=str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, _: Viewer) -> Response:
    """Prometheus text format."""
    found: CollectorMetrics = request.app.state.metrics
    return Response(generate_latest(found.registry), media_type=CONTENT_TYPE_LATEST)
