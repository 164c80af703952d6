"""Tool lists: an agent never sees a tool its policy will not let it call.

``tools/list`` results are filtered wherever they come back: a JSON body, or an event in an SSE
stream (a POST's answer, or the GET stream when a client resumes). Streams stay streams: this wraps
the stream callback set before it and passes every event on as soon as it is whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mitmproxy import http

from bastion.proxy import mcp
from bastion.proxy.objects import tool_object
from bastion.proxy.policy import PolicyEngine
from bastion.proxy.sse import is_event_stream
from bastion.proxy.state import mcp_server, state

log = logging.getLogger(__name__)


class McpToolList:
    def __init__(self, engine: PolicyEngine) -> None:
        self.engine = engine

    def _filter(self, flow: http.HTTPFlow) -> Callable[[Any], mcp.Json | None] | None:
        response, identity, server = flow.response, state(flow).identity, mcp_server(flow)
        if response is None or identity is None or server is None or "x-bastion-error" in response.headers:
            return None

        def visible(name: str) -> bool:
            return self.engine.visible(identity.agent_id, identity.role, tool_object(name, server.name), "call")

        def rewrite(message: Any) -> mcp.Json | None:
            try:
                return mcp.filter_tools(message, visible)
            except Exception:  # never break the stream; the calls themselves are still decided
                log.exception("could not filter a tool list")
                return None

        return rewrite

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        rewrite = self._filter(flow)
        if rewrite is None or flow.response is None or not is_event_stream(flow.response):
            return
        if flow.response.headers.get("content-encoding", "identity") != "identity":
            log.warning(
                "MCP server %s compressed a stream unasked; tool lists in it are not filtered", flow.request.host
            )
            return
        rewriter = mcp.sse_rewriter(rewrite)
        previous = flow.response.stream
        flow.response.stream = mcp.chain(previous, rewriter) if callable(previous) else rewriter
        flow.response.headers.pop("content-length", None)

    def response(self, flow: http.HTTPFlow) -> None:
        rewrite = self._filter(flow)
        response = flow.response
        if (
            rewrite is None
            or response is None
            or response.stream
            or "json" not in response.headers.get("content-type", "")
        ):
            return
        try:
            replaced = rewrite(response.json())
        except (ValueError, UnicodeDecodeError):
            return
        if replaced is not None:
            response.set_content(mcp.encode(replaced))
