"""An MCP session belongs to the agent that opened it; the binding is in :mod:`bastion.proxy.mcp_sessions`.

The server's ``Mcp-Session-Id`` reaches the client bound to the agent (on every answer that carries
one, the proxy's own included), and a request's id goes to the server unbound. A request whose id was
not handed to its agent (another agent's session, or one made up) is refused with HTTP 404 and a
JSON-RPC error, as MCP servers answer an unknown session: the spec tells clients to start a new
session then, and mcp 1.x clients fail the pending call with a JSON-RPC error ("Session terminated"),
where any other 4xx would surface as an HTTP error from inside their transport instead.

It checks in ``requestheaders``, after Identify and before every ``request`` hook, and binds in
``responseheaders`` after McpGovernance has noted the server's (unbound) id.
"""

from __future__ import annotations

from mitmproxy import http

from bastion.proxy import mcp
from bastion.proxy.config import MCP_PROVIDER
from bastion.proxy.decision import deny
from bastion.proxy.mcp_sessions import SessionBinder
from bastion.proxy.state import answered, mcp_server, refuse, state

UNKNOWN_SESSION_CODE = "unknown_mcp_session"


class McpSessions:
    def __init__(self, binder: SessionBinder) -> None:
        self.binder = binder

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        server, st = mcp_server(flow), state(flow)
        if answered(flow) or server is None or st.identity is None:
            return
        presented = flow.request.headers.get(mcp.SESSION_HEADER)
        if presented is None:
            return
        upstream = self.binder.unbind(st.identity.agent_id, server.name, presented)
        if upstream is None:
            message = (
                f"Bastion: this Mcp-Session-Id was not handed to agent {st.identity.agent_id} for MCP server "
                f"{server.name!r}; start a new session."
            )
            refuse(flow, deny(UNKNOWN_SESSION_CODE, message), 404, message, UNKNOWN_SESSION_CODE, MCP_PROVIDER)
            return
        flow.request.headers[mcp.SESSION_HEADER] = upstream

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        server, st, response = mcp_server(flow), state(flow), flow.response
        if server is None or response is None or st.identity is None:
            return
        if upstream := response.headers.get(mcp.SESSION_HEADER):
            response.headers[mcp.SESSION_HEADER] = self.binder.bind(st.identity.agent_id, server.name, upstream)
