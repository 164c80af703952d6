"""The proxy's addons, in the order they run for each hook."""

from __future__ import annotations

from opentelemetry.trace import Tracer

from bastion.proxy.addons.authorization import Authorize
from bastion.proxy.addons.classification import Classify
from bastion.proxy.addons.forwarding import Forward
from bastion.proxy.addons.health import Health
from bastion.proxy.addons.identity import Identify
from bastion.proxy.addons.mcp import McpGovernance
from bastion.proxy.addons.mcp_routing import McpRouting
from bastion.proxy.addons.mcp_tools import McpToolList
from bastion.proxy.addons.routing import Routing
from bastion.proxy.addons.streaming import ResponseStream
from bastion.proxy.addons.tool_calls import ToolCalls
from bastion.proxy.addons.tracing import Tracing
from bastion.proxy.addons.validation import Validate
from bastion.proxy.config import GatewayConfig
from bastion.proxy.keys import KeyStore
from bastion.proxy.policy import PolicyEngine


def default_addons(
    config: GatewayConfig, keys: KeyStore, engine: PolicyEngine, tracer: Tracer, max_body_bytes: int
) -> list[object]:
    return [
        Health(),
        McpRouting(config),
        Routing(config),
        Identify(keys),
        Validate(max_body_bytes),
        Classify(),
        # Decides MCP tools/call itself (JSON-RPC answers), so before Authorize.
        McpGovernance(engine, tracer),
        Authorize(engine),
        Forward(),
        ResponseStream(),
        # Wraps the stream callback ResponseStream set, so after it.
        McpToolList(engine),
        # Filters offered tools after Authorize and Forward; wraps ResponseStream's stream callback.
        ToolCalls(engine, tracer, config.tool_calls),
        # Last, so that it records what every addon before it decided.
        Tracing(tracer),
    ]
