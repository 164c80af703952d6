"""Factories for one-addon tests: each addon built in one place, and flows in the state the addons
before it leave them (routed, identified, read, classified, decided).

Tests build addons only through these functions, so that a constructor change is made here once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mitmproxy import http
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from bastion.approval_config import ApprovalConfig
from bastion.proxy.addons.approval import HoldForApproval
from bastion.proxy.addons.authorization import Authorize
from bastion.proxy.addons.classification import Classify
from bastion.proxy.addons.durability import Durability
from bastion.proxy.addons.forwarding import Forward
from bastion.proxy.addons.health import Health
from bastion.proxy.addons.identity import Identify
from bastion.proxy.addons.intervention import Guidance, Suspension
from bastion.proxy.addons.mcp_routing import McpRouting
from bastion.proxy.addons.mcp_sessions import McpSessions
from bastion.proxy.addons.mcp_tools import McpToolList
from bastion.proxy.addons.routing import Routing
from bastion.proxy.addons.streaming import ResponseStream
from bastion.proxy.addons.tracing import Tracing
from bastion.proxy.addons.validation import Validate
from bastion.proxy.config import GatewayConfig, McpServer, Route, mcp_server
from bastion.proxy.control import Control
from bastion.proxy.decision import Decision
from bastion.proxy.keys import Identity, KeyStore
from bastion.proxy.outbox import Outbox
from bastion.proxy.policy import PolicyEngine
from bastion.proxy.state import mcp_server as mcp_server_of
from bastion.proxy.state import state
from factories.proxy import SESSIONS, chat_body, flow, policies_dir, route, run_hooks

AGENT = Identity("agent-1", "assistant", "k1")
TOOLS = mcp_server("tools", "http://tools.test:9200/mcp")


def config(
    tmp_path: Path, routes: tuple[Route, ...] | None = None, mcp: tuple[McpServer, ...] = (TOOLS,)
) -> GatewayConfig:
    routes = routes or (route("openai"), route("anthropic"))
    return GatewayConfig(routes=routes, keys_file=tmp_path / "keys.yaml", mcp_servers=mcp)


def engine(tmp_path: Path, rules: str | None = None) -> PolicyEngine:
    """The bundled policy (or ``rules``) in a copy under ``tmp_path``."""
    return PolicyEngine(policies_dir(tmp_path, rules))


def tracer() -> tuple[Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("t"), exporter


def spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return list(exporter.get_finished_spans())


class FakeCollector(Control):
    """A Control whose collector is this object: suspensions and guidance set by the test; ``claims``
    answers each guidance claim (a dict, None for "another proxy delivered it", or an exception)."""

    def __init__(self, suspended: dict[str, str] | None = None) -> None:
        super().__init__("http://collector.invalid", ApprovalConfig())
        self.suspended = dict(suspended or {})
        self.claims: dict[str, Any] = {}
        self.claimed: list[str] = []

    async def claim(self, agent_id: str, guidance_id: str) -> dict[str, Any] | None:
        self.claimed.append(guidance_id)
        found = self.claims.get(guidance_id)
        if isinstance(found, BaseException):
            raise found
        return found if found is None else dict(found)


# One builder per addon.


def health() -> Health:
    return Health()


def mcp_routing(cfg: GatewayConfig) -> McpRouting:
    return McpRouting(cfg)


def routing(cfg: GatewayConfig) -> Routing:
    return Routing(cfg)


def identify(keys: KeyStore) -> Identify:
    return Identify(keys)


def validate(max_body_bytes: int = 1024) -> Validate:
    return Validate(max_body_bytes)


def classify_addon() -> Classify:
    return Classify()


def suspension(control: Control) -> Suspension:
    return Suspension(control)


def guidance(control: Control) -> Guidance:
    return Guidance(control)


def mcp_sessions() -> McpSessions:
    return McpSessions(SESSIONS)


def authorize(policy: PolicyEngine) -> Authorize:
    """Authorize as a decider: a review is left held (``CallState.hold``) for the hold addon."""
    return Authorize(policy)


def deciders_without_approvals(policy: PolicyEngine) -> list[object]:
    """What decides a call when no approvals are configured: a review is refused at once."""
    return [Authorize(policy), HoldForApproval()]


def forward() -> Forward:
    return Forward()


def response_stream() -> ResponseStream:
    return ResponseStream()


def mcp_tool_list(policy: PolicyEngine) -> McpToolList:
    return McpToolList(policy)


def tracing(t: Tracer) -> Tracing:
    return Tracing(t)


def durability(outbox: Outbox, timeout: float = 60.0) -> Durability:
    return Durability(outbox, timeout)


# Flows in the state the addons before the one under test leave them.


def run(addon: object, f: http.HTTPFlow, *hooks: str) -> http.HTTPFlow:
    """Run ``hooks`` (default: requestheaders, request) of one addon on ``f``."""
    return run_hooks([addon], f, hooks or ("requestheaders", "request"))


def routed(f: http.HTTPFlow, r: Route | None = None) -> http.HTTPFlow:
    """``f`` as Routing leaves it: on ``r`` (default: the route its path's prefix names)."""
    st = state(f)
    st.route = r or route(f.request.path.split("/")[1])
    st.upstream_path = st.route.upstream_path(f.request.path)
    return f


def mcp_flow(body: Any = None, *, identity: Identity | None = AGENT, **kw: Any) -> http.HTTPFlow:
    """A request to the MCP server ``tools`` as McpRouting and Identify leave it."""
    f = run(
        mcp_routing(GatewayConfig(routes=(), keys_file=Path("keys.yaml"), mcp_servers=(TOOLS,))),
        flow("/mcp/tools", body, **kw),
        "requestheaders",
    )
    assert mcp_server_of(f) == TOOLS
    state(f).identity = identity
    return f


def call_flow(
    path: str = "/openai/v1/chat/completions",
    body: Any = None,
    *,
    r: Route | None = None,
    identity: Identity | None = AGENT,
    decision: Decision | None = None,
    **kw: Any,
) -> http.HTTPFlow:
    """A call as the addons before Authorize leave it: routed, identified, its body read and
    classified (by Classify itself); with ``decision`` as if decided."""
    body = chat_body() if body is None else body
    f = routed(flow(path, body, **kw), r)
    st = state(f)
    st.identity = identity
    st.body = body if isinstance(body, dict) else None
    run(classify_addon(), f, "request")
    assert st.call is not None and f.response is None, "Classify refused the call"
    st.decision = decision
    return f


def feed(f: http.HTTPFlow, stream: bytes, size: int | None = 5) -> bytes:
    """Feed ``stream`` through the stream callback the addons set on ``f``'s response, in chunks of
    ``size`` bytes and then the final b"", as mitmproxy does; returns what reached the client."""
    assert f.response is not None and callable(f.response.stream)
    callback = f.response.stream
    step = size or max(len(stream), 1)
    out = [callback(stream[i : i + step]) for i in range(0, len(stream), step)] + [callback(b"")]
    return b"".join(c if isinstance(c, bytes) else b"".join(c) for c in out)
