"""Runs mitmproxy inside Bastion's own process: reverse mode for base URLs, explicit for HTTPS_PROXY."""

from __future__ import annotations

import asyncio
import logging
import signal

from mitmproxy import options
from prometheus_client import start_http_server

from bastion import approval_config, semconv
from bastion.proxy import budget_guard, suspensions
from bastion.proxy import config as gateway_config
from bastion.proxy.addons import Limits, Redaction, default_addons
from bastion.proxy.budget_guard import BudgetGuard
from bastion.proxy.config import LiveConfig
from bastion.proxy.control import Control
from bastion.proxy.durable import DurableTelemetry
from bastion.proxy.keys import KeyStore
from bastion.proxy.master import lean_master, share_ports
from bastion.proxy.mcp_sessions import SessionBinder
from bastion.proxy.metrics import ProxyMetrics
from bastion.proxy.pii import config as pii_config
from bastion.proxy.pii.reload import PiiReloader
from bastion.proxy.policy import PolicyEngine
from bastion.proxy.telemetry import tracer_provider
from bastion.proxy.watch import subscribe
from bastion.reload import Reloader
from bastion.settings import ProxySettings

log = logging.getLogger(__name__)
# mitmproxy logs every connection at INFO; Bastion's own spans record each call instead.
logging.getLogger("mitmproxy").setLevel(logging.WARNING)
CA_CERT_NAME = "mitmproxy-ca-cert.pem"
# Reverse mode needs an upstream; every route rewrites it, and a request no route claims is
# answered before any connection is made (connection_strategy=lazy).
_UNUSED_UPSTREAM = "http://127.0.0.1:9"


def modes(settings: ProxySettings) -> list[str]:
    return [
        f"reverse:{_UNUSED_UPSTREAM}@{settings.host}:{settings.reverse_port}",
        f"regular@{settings.host}:{settings.explicit_port}",
    ]


async def run(settings: ProxySettings) -> None:
    config = LiveConfig(gateway_config.load(settings.policies_dir, settings.keys_file))
    keys = KeyStore(config.current.keys_file, check_on_lookup=False)  # the Reloader checks it
    engine = PolicyEngine(settings.policies_dir)
    pii = pii_config.load(settings.policies_dir)  # a bad pii.yaml stops the start: fail closed
    durable = None
    if settings.outbox_path is not None:
        durable = DurableTelemetry.open(
            settings.outbox_path, settings.collector_url, settings.audit_head_interval, settings.collector_headers
        )
    provider = (
        durable.provider if durable else tracer_provider(settings.collector_url, headers=settings.collector_headers)
    )
    settings.confdir.mkdir(parents=True, exist_ok=True)
    if settings.worker:
        share_ports()
    master = lean_master(options.Options(mode=modes(settings), confdir=str(settings.confdir)))
    master.options.update(connection_strategy="lazy")  # type: ignore[no-untyped-call]
    tracer = provider.get_tracer("bastion.proxy")
    control = Control(
        settings.collector_url,
        approval_config.load(settings.policies_dir),
        proxy_name=f"{settings.host}:{settings.reverse_port}{f' worker {settings.worker}' if settings.worker else ''}",
        headers=settings.collector_headers,
        suspensions_file=settings.state_dir / suspensions.FILE_NAME,
    )
    # Prices and budgets: a bad section stops the start (fail closed), later bad edits are ignored.
    guard = BudgetGuard(
        settings.collector_url,
        settings.policies_dir,
        settings.collector_headers,
        state_file=settings.state_dir / budget_guard.FILE_NAME,
    )
    sessions = SessionBinder.from_token(settings.proxy_token.get() if settings.proxy_token else None)
    metrics = ProxyMetrics()
    metrics.watch(lambda: engine.version, durable.outbox if durable else None, durable.shipper if durable else None)
    addons = default_addons(
        config,
        keys,
        engine,
        tracer,
        settings.max_body_bytes,
        control,
        pii,
        sessions=sessions,
        outbox=durable.outbox if durable else None,
        metrics=metrics,
        budgets=guard,
    )
    master.addons.add(*addons)  # type: ignore[no-untyped-call]
    if durable is not None:
        durable.start(tracer)
    metrics_line = ""
    if settings.worker_metrics_port is not None:
        start_http_server(settings.worker_metrics_port, settings.host, metrics.registry)
        metrics_line = f"\n  metrics: http://{settings.host}:{settings.worker_metrics_port}/metrics"

    def record_rejection(message: str, alert: str = semconv.ALERT_POLICY_REJECTED) -> None:
        metrics.policy_reload_failures.inc()
        try:
            with tracer.start_as_current_span(alert.replace("_", " ")) as span:
                span.set_attributes(
                    {
                        semconv.BASTION_ALERT_TYPE: alert,
                        semconv.BASTION_ALERT_MESSAGE: message[:4000],
                        semconv.BASTION_POLICY_VERSION: engine.version,
                    }
                )
        except Exception:
            log.exception("could not record the rejected edit")

    keys.on_rejected = lambda message: record_rejection(message, semconv.ALERT_KEYS_REJECTED)

    redaction = next(a for a in addons if isinstance(a, Redaction))
    pii_reloader = PiiReloader(settings.policies_dir, redaction)
    limiter = next(a for a in addons if isinstance(a, Limits)).limiter
    reloader = Reloader(on_rejected=record_rejection)
    watched = (settings.policies_dir, settings.keys_file, config, engine, keys, pii_reloader, control, limiter, guard)
    subscribe(reloader, *watched)
    reloader.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, master.shutdown)
    for route in config.current.routes:
        if route.api_key_env and route.api_key is None:
            log.warning("route %s: %s is not set; its calls will fail with 502", route.name, route.api_key_env)
    routes = ", ".join(
        f"{r.prefix} -> {r.upstream.scheme}://{r.upstream.authority}{r.upstream.base_path}"
        for r in config.current.routes
    )
    worker = f" (worker {settings.worker} of {settings.workers})" if settings.worker else ""
    print(
        f"Bastion proxy{worker}: reverse http://{settings.host}:{settings.reverse_port}  "
        f"explicit (HTTPS_PROXY) http://AGENT:KEY@{settings.host}:{settings.explicit_port}\n"
        f"  routes: {routes}\n"
        f"  CA certificate: {(settings.confdir / CA_CERT_NAME).resolve()}\n"
        f"  policy version {engine.version}; keys from {config.current.keys_file}{metrics_line}",
        flush=True,
    )
    try:
        await master.run()
    finally:
        reloader.stop()
        if durable is not None:
            durable.stop()
        else:
            provider.shutdown()
