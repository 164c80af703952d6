"""MCP servers on the reverse proxy: ``/mcp/<server>`` (with or without a final slash) goes to the
server's exact URL, never through a redirect; any other path under ``/mcp`` gets a JSON-RPC 404."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ReverseMode

from bastion import semconv
from bastion.proxy import mcp
from bastion.proxy.config import MCP_PROVIDER, GatewayConfig, LiveConfig, live
from bastion.proxy.decision import error
from bastion.proxy.state import MCP_SERVER, answered, refuse, state


class McpRouting:
    def __init__(self, config: GatewayConfig | LiveConfig) -> None:
        self.live = live(config)  # MCP servers added to bastion.yaml apply without a restart

    @property
    def config(self) -> GatewayConfig:
        return self.live.current

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if answered(flow) or not isinstance(flow.client_conn.proxy_mode, ReverseMode):
            return
        name = mcp.server_name(flow.request.path)
        if name is None:
            return
        st = state(flow)
        st.attributes[semconv.BASTION_CALL_KIND] = semconv.KIND_MCP
        server = self.config.mcp_server(name)
        if server is None:
            configured = ", ".join(f"{s.name} at {s.route.prefix}" for s in self.config.mcp_servers) or "none"
            message = f"No MCP server at {flow.request.path.split('?', 1)[0]!r}. Configured MCP servers: {configured}."
            refuse(flow, error("unknown_mcp_server", message), 404, message, "unknown_mcp_server", MCP_PROVIDER)
            return
        flow.metadata[MCP_SERVER] = server
        st.attributes[semconv.BASTION_MCP_SERVER] = server.name
        st.route = server.route
        st.upstream_path = server.upstream_path(flow.request.path.partition("?")[2])
        # Uncompressed answers, so that tool lists in them can be read and streams cut into events.
        flow.request.headers.pop("accept-encoding", None)
