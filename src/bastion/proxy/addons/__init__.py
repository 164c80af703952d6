"""The proxy's addons, in the order they run for each hook.

Only this package knows the addon modules: code outside it imports from here, and no addon imports
another (they share values through ``proxy/state.py`` and pure modules; tests/test_structure.py).
"""

from __future__ import annotations

from opentelemetry.trace import Tracer

from bastion.proxy.addons.approval import HoldForApproval
from bastion.proxy.addons.authorization import Authorize
from bastion.proxy.addons.budgets import Budgets, Cost
from bastion.proxy.addons.classification import Classify
from bastion.proxy.addons.durability import Durability
from bastion.proxy.addons.egress import Egress
from bastion.proxy.addons.forwarding import Forward
from bastion.proxy.addons.health import Health
from bastion.proxy.addons.identity import Identify
from bastion.proxy.addons.intervention import Guidance, Suspension
from bastion.proxy.addons.limits import Limits, LimitsSettle
from bastion.proxy.addons.mcp import McpGovernance
from bastion.proxy.addons.mcp_routing import McpRouting
from bastion.proxy.addons.mcp_sessions import McpSessions
from bastion.proxy.addons.mcp_tools import McpToolList
from bastion.proxy.addons.metrics import Metrics
from bastion.proxy.addons.redaction import ConversationHeader, Redaction
from bastion.proxy.addons.routing import Routing
from bastion.proxy.addons.streaming import ResponseStream
from bastion.proxy.addons.tool_calls import ToolCalls
from bastion.proxy.addons.tracing import Tracing
from bastion.proxy.addons.validation import Validate
from bastion.proxy.budget_guard import BudgetGuard
from bastion.proxy.config import GatewayConfig, LiveConfig, live
from bastion.proxy.control import Control
from bastion.proxy.egress import Resolver
from bastion.proxy.keys import KeyStore
from bastion.proxy.limiter import Limiter
from bastion.proxy.mcp_sessions import SessionBinder
from bastion.proxy.metrics import ProxyMetrics
from bastion.proxy.outbox import Outbox
from bastion.proxy.pii.config import PiiConfig
from bastion.proxy.policy import PolicyEngine
from bastion.proxy.provenance import ProvenanceLinks
from bastion.proxy.session import SessionStore

__all__ = ["Limits", "Redaction", "default_addons"]


def default_addons(
    config: GatewayConfig | LiveConfig,
    keys: KeyStore,
    engine: PolicyEngine,
    tracer: Tracer,
    max_body_bytes: int,
    control: Control | None = None,
    pii: PiiConfig | None = None,
    resolver: Resolver | None = None,
    sessions: SessionBinder | None = None,
    outbox: Outbox | None = None,
    metrics: ProxyMetrics | None = None,
    limiter: Limiter | None = None,
    budgets: BudgetGuard | None = None,
) -> list[object]:
    """The addons; with ``control``, reviews are held for a human (else refused) and humans can step in.
    ``resolver`` replaces DNS for the explicit proxy's address checks (tests). MCP sessions are bound
    with ``sessions`` (replicas share its secret), or with a secret of this process. With ``outbox``,
    each response waits for its spans' fsync; with ``metrics``, every call is counted. ``limiter``
    applies the ``limits:`` section (one is made from ``config`` without it; the server reloads it).
    ``budgets`` holds the prices and budgets (without it, the built-in prices and no budget)."""
    current = live(config)  # routes and MCP servers follow bastion.yaml while running
    limits = Limits(limiter or Limiter(current.current.limits), control, current)
    guard = budgets or BudgetGuard("")
    # Tool calls models emit, with their provenance, for the MCP tools/call that runs each.
    links = ProvenanceLinks()
    addons: list[object | None] = [
        Health(),
        McpRouting(current),
        Routing(current),
        # Reads x-bastion-conversation before Identify removes x-bastion-* headers.
        ConversationHeader(),
        Identify(keys),
        Validate(max_body_bytes),
        Classify(),
        # Refuses every call of a suspended agent, before any policy.
        *([] if control is None else [Suspension(control)]),
        # Decides MCP tools/call itself (JSON-RPC answers), so before Authorize.
        McpGovernance(engine, tracer, current, links=links, sessions=SessionStore()),
        # Checks session ids in requestheaders (before every request hook); binds the server's id in
        # responseheaders, after McpGovernance noted it unbound.
        McpSessions(sessions or SessionBinder.from_token(None)),
        Authorize(engine),
        # Explicit proxy: decides CONNECT and raw TCP in tunnels, and checks the address of allowed
        # calls to hosts no route claims (before a human is asked to approve them); pins connections.
        Egress(current, keys, engine, resolver),
        # Refuses model calls whose budget is spent: after the policy, before a human is asked.
        Budgets(guard),
        # The one place reviews are held for a human (async: other calls flow on) or, without
        # approvals, refused; then guidance is added.
        HoldForApproval(control),
        None if control is None else Guidance(control),
        # Rates, tokens, concurrency (an async wait for a slot), runaway agents, open circuits: on
        # allowed calls, after any human approved them, just before they leave.
        limits,
        Forward(),
        ResponseStream(),
        # Wraps the stream callback ResponseStream set, so after it.
        McpToolList(engine),
        # PII: redacts allowed requests (after Authorize and McpGovernance decide on the originals);
        # wraps the stream callbacks before it, and ToolCalls wraps it, so tool calls the model
        # emits are decided on restored arguments. Idle without pii.yaml until one appears.
        Redaction(pii),
        # Filters offered tools after Authorize and Forward; wraps ResponseStream's stream callback.
        ToolCalls(engine, tracer, current, links),
        # Once the response and its usage are read, before Tracing records what it tripped.
        LimitsSettle(limits),
        # Prices the call from the usage ResponseStream read (its response hook ran), before Tracing.
        Cost(guard),
        # After every deciding addon, so that it records what each decided.
        Tracing(tracer),
        # After Tracing ended the call's span: waits until the outbox has it on disk.
        None if outbox is None else Durability(outbox),
        # Last: its request hook runs after every decision and hold, its response after the fsync.
        None if metrics is None else Metrics(metrics),
    ]
    return [a for a in addons if a is not None]
