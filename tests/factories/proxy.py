"""Factories for proxy tests: flows, routes, key stores and policy directories."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow, tutils
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bastion.proxy.addons import default_addons
from bastion.proxy.budget_guard import BudgetGuard
from bastion.proxy.config import GatewayConfig, McpServer, Route, Upstream
from bastion.proxy.egress import ip
from bastion.proxy.keys import KeyStore, create_key
from bastion.proxy.limits import LimitSettings
from bastion.proxy.mcp_sessions import SessionBinder
from bastion.proxy.policy import PolicyEngine
from bastion.settings import Secret
from support import copy_policies

SESSIONS = SessionBinder(b"test proxy token")
REVERSE = ProxyMode.parse("reverse:http://127.0.0.1:9@0")
REGULAR = ProxyMode.parse("regular")


def route(provider: str = "openai", prefix: str | None = None, key: str | None = "real-key", **kw: Any) -> Route:
    return Route(
        name=kw.get("name", provider),
        prefix=prefix or f"/{provider}/",
        provider=provider,
        upstream=Upstream.parse(kw.get("upstream", "http://upstream.test:9100/")),
        hosts=tuple(kw.get("hosts", ())),
        api_key_env=f"{provider.upper()}_API_KEY",
        api_key=Secret(key) if key else None,
    )


def flow(
    path: str = "/openai/v1/chat/completions",
    body: Any = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    mode: ProxyMode = REVERSE,
) -> http.HTTPFlow:
    """A request flow as the proxy sees it; ``body`` dicts become JSON."""
    content = json.dumps(body).encode() if isinstance(body, dict | list) else (body or b"")
    hdrs = {"content-type": "application/json", **(headers or {})}
    req = tutils.treq(
        method=method.encode(),
        host=host,
        port=port,
        path=path.encode(),
        headers=http.Headers(**{k.replace("-", "_"): v for k, v in hdrs.items()}),
        content=content,
    )
    f = tflow.tflow(req=req)
    f.client_conn.proxy_mode = mode
    return f


def mcp_session(upstream: str, agent: str = "agent-1", server: str = "tools") -> str:
    """The Mcp-Session-Id the proxies built by these factories hand ``agent`` for the server's ``upstream`` id."""
    return SESSIONS.bind(agent, server, upstream)


def chat_body(model: str = "scripted-small", stream: bool = False) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello"}]}


def keystore(tmp_path: Path, agent: str = "agent-1", role: str = "assistant") -> tuple[KeyStore, str]:
    key, _ = create_key(tmp_path / "keys.yaml", agent, role)
    return KeyStore(tmp_path / "keys.yaml"), key


def policies_dir(tmp_path: Path, rules: str | None = None) -> Path:
    """A copy of the bundled policies, optionally with other rules."""
    target = copy_policies(tmp_path / "policies")
    if rules is not None:
        (target / "policy.csv").write_text(rules)
    return target


# The explicit proxy's DNS in unit tests: names resolve from this table, others to nothing.
DNS = {
    "api.weather.example": ["93.184.215.14"],
    "evil.example": ["93.184.215.15"],
    "db.example": ["93.184.215.16", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "wiki.corp.example": ["10.0.0.7"],
    "localhost": ["127.0.0.1", "::1"],
}


async def table_resolver(host: str, port: int) -> list[str]:
    return [host] if ip(host) is not None else DNS.get(host, [])


def gateway(
    tmp_path: Path,
    routes: tuple[Route, ...] | None = None,
    mcp_servers: tuple[McpServer, ...] = (),
    rules: str | None = None,
    mcp_refusals: str = "tool_result",
    limits: LimitSettings | None = None,
    budgets: BudgetGuard | None = None,
) -> tuple[list[object], str, InMemorySpanExporter]:
    """The default addons over a fresh key store and the bundled policy (or ``rules``); returns
    (addons, key, spans). Explicit-proxy hosts resolve from ``DNS``."""
    keys, key = keystore(tmp_path)
    config = GatewayConfig(
        routes=routes or (route("openai"), route("anthropic")),
        keys_file=tmp_path / "keys.yaml",
        mcp_servers=mcp_servers,
        mcp_refusals=mcp_refusals,
        limits=limits or LimitSettings(),
    )
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    engine = PolicyEngine(policies_dir(tmp_path, rules))
    addons = default_addons(
        config,
        keys,
        engine,
        provider.get_tracer("t"),
        1024,
        resolver=table_resolver,
        sessions=SESSIONS,
        budgets=budgets,
    )
    return addons, key, exporter


def run_hooks(addons: list[object], f: http.HTTPFlow, hooks: tuple[str, ...]) -> http.HTTPFlow:
    """Run ``hooks`` on every addon in order, as mitmproxy does (awaiting async ones)."""
    for hook in hooks:
        for addon in addons:
            if hasattr(addon, hook):
                result = getattr(addon, hook)(f)
                if inspect.isawaitable(result):
                    asyncio.run(_wait(result))
    return f


async def _wait(result: Awaitable[object]) -> None:
    await result


def run_request(addons: list[object], f: http.HTTPFlow) -> http.HTTPFlow:
    """Run the request-side hooks in order, as mitmproxy does; like mitmproxy, also responseheaders
    when an addon answered the request itself."""
    run_hooks(addons, f, ("requestheaders", "request"))
    return run_hooks(addons, f, ("responseheaders",)) if f.response is not None else f


def run_response(addons: list[object], f: http.HTTPFlow, response: http.Response | None = None) -> http.HTTPFlow:
    if response is not None:
        f.response = response
    return run_hooks(addons, f, ("responseheaders", "response"))
