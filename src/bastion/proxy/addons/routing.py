"""Which configured route a request belongs to: by path prefix (reverse) or by host (explicit)."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ReverseMode

from bastion.proxy.config import GatewayConfig, LiveConfig, Route, Upstream, live
from bastion.proxy.decision import error
from bastion.proxy.state import answered, refuse, state


def passthrough_route(flow: http.HTTPFlow) -> Route:
    """Explicit-proxy traffic to a host no route names: a plain HTTP call to that host."""
    upstream = Upstream(flow.request.scheme, flow.request.host, flow.request.port, "/")
    return Route(flow.request.host, "/", "http", upstream, (flow.request.host,), None, None)


def upstream_path(route: Route, path: str, reverse: bool) -> str:
    if reverse:
        return route.upstream_path(path)
    return route.upstream.base_path + path.lstrip("/")


class Routing:
    def __init__(self, config: GatewayConfig | LiveConfig) -> None:
        self.live = live(config)  # routes added to bastion.yaml apply without a restart

    @property
    def config(self) -> GatewayConfig:
        return self.live.current

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if answered(flow) or st.route is not None:  # already routed (an MCP server)
            return
        reverse = isinstance(flow.client_conn.proxy_mode, ReverseMode)
        if reverse:
            st.route = self.config.route_for_path(flow.request.path)
            if st.route is None:
                prefixes = ", ".join(r.prefix for r in self.config.routes) or "none"
                message = f"No Bastion route for path {flow.request.path!r}. Configured prefixes: {prefixes}."
                refuse(flow, error("unknown_route", message), 404, message, "unknown_route", "http")
                return
        else:
            st.route = self.config.route_for_host(flow.request.host) or passthrough_route(flow)
        st.upstream_path = upstream_path(st.route, flow.request.path, reverse)
