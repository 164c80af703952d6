"""What the addons learn about one call, handed from one to the next in ``flow.metadata``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http
from mitmproxy.flow import Flow
from opentelemetry.trace import Span

from bastion.proxy.classify import Call
from bastion.proxy.config import McpServer, Route
from bastion.proxy.decision import Decision
from bastion.proxy.errors import error_response
from bastion.proxy.formats import ApiFormat
from bastion.proxy.hold import Hold
from bastion.proxy.keys import Identity
from bastion.proxy.provenance import Conversation
from bastion.proxy.usage import Usage

_KEY = "bastion"
# flow.metadata key: not an agent's call (the health check): no span, no audit record, not counted.
INTERNAL = "bastion.internal"
# flow.metadata key: the McpServer a flow is for (set by McpRouting, read by the MCP addons after it).
MCP_SERVER = "bastion.mcp.server"
# flow.metadata key: the agent's x-bastion-conversation header (ConversationHeader keeps it there).
CONVERSATION = "bastion.pii.conversation"


@dataclass
class CallState:
    route: Route | None = None
    # The request's path (with query) as the upstream will see it.
    upstream_path: str = ""
    identity: Identity | None = None
    body: Any = None
    # A model request's body as the agent sent it, before redaction or guidance (provenance reads it).
    agent_body: Any = None
    call: Call | None = None
    # The API format of a model call (set by Classify): what the later addons ask about its bodies.
    format: ApiFormat | None = None
    decision: Decision | None = None
    usage: Usage = field(default_factory=Usage)
    # Extra span attributes an addon wants recorded for this call (semconv names).
    attributes: dict[str, Any] = field(default_factory=dict)
    span: Span | None = None
    # Set by the deciding addon with every review: the hold addon (addons/approval.py) holds the
    # call for a human, or refuses it when no approvals are configured.
    hold: Hold | None = None
    # Seconds the call waited for a human (HoldForApproval); not Bastion's own time.
    held_seconds: float = 0.0
    _conversation: Conversation | None = field(default=None, repr=False)

    def conversation(self) -> Conversation:
        """The agent's conversation (``agent_body``) as its format reads it: texts with their sources,
        earlier tool calls. Read once per call; the limits and the tool-call provenance share it."""
        if self._conversation is None:
            fmt = self.format
            self._conversation = fmt.conversation(self.agent_body) if fmt is not None else Conversation()
        return self._conversation


def state(flow: Flow) -> CallState:
    """The call's state: of an HTTP request, a CONNECT, or a TCP flow inside a tunnel."""
    found = flow.metadata.get(_KEY)
    if not isinstance(found, CallState):
        found = flow.metadata[_KEY] = CallState()
    return found


def answered(flow: http.HTTPFlow) -> bool:
    """An earlier addon already answered (or killed) the flow."""
    return flow.response is not None or flow.error is not None


def mcp_server(flow: http.HTTPFlow) -> McpServer | None:
    """The MCP server McpRouting found for the flow, if any."""
    found = flow.metadata.get(MCP_SERVER)
    return found if isinstance(found, McpServer) else None


def refuse_with(flow: http.HTTPFlow, decision: Decision, response: http.Response) -> None:
    """Refuse the call: its decision and the answer the caller gets, set together."""
    state(flow).decision = decision
    flow.response = response


def refuse(
    flow: http.HTTPFlow,
    decision: Decision,
    status: int,
    message: str,
    code: str,
    provider: str | None = None,
    retry_after: int | None = None,
) -> None:
    """Refuse the call with ``status`` and an error body in the caller's API format (the call's format
    once Classify recognised it, else the route's provider, unless ``provider`` names another),
    naming ``code``; the decision says why, for the audit. ``retry_after`` (seconds): a Retry-After header."""
    st = state(flow)
    caller: ApiFormat | str
    if provider is not None:
        caller = provider
    elif st.format is not None:
        caller = st.format
    else:
        caller = st.route.provider if st.route is not None else "http"
    refuse_with(flow, decision, error_response(caller, status, message, code, retry_after))
