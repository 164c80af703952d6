"""What the addons learn about one call, handed from one to the next in ``flow.metadata``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http
from mitmproxy.flow import Flow
from opentelemetry.trace import Span

from bastion.proxy.classify import Call
from bastion.proxy.config import Route
from bastion.proxy.decision import Decision
from bastion.proxy.hold import Hold
from bastion.proxy.keys import Identity
from bastion.proxy.usage import Usage

_KEY = "bastion"


@dataclass
class CallState:
    route: Route | None = None
    # The request's path (with query) as the upstream will see it.
    upstream_path: str = ""
    identity: Identity | None = None
    body: Any = None
    call: Call | None = None
    decision: Decision | None = None
    usage: Usage = field(default_factory=Usage)
    # Extra span attributes an addon wants recorded for this call (semconv names).
    attributes: dict[str, Any] = field(default_factory=dict)
    span: Span | None = None
    # Set by the deciding addon when a review holds the call for a human (addons/approval.py).
    hold: Hold | None = None
    # Seconds the call waited for a human (HoldForApproval); not Bastion's own time.
    held_seconds: float = 0.0


def state(flow: Flow) -> CallState:
    """The call's state: of an HTTP request, a CONNECT, or a TCP flow inside a tunnel."""
    found = flow.metadata.get(_KEY)
    if not isinstance(found, CallState):
        found = flow.metadata[_KEY] = CallState()
    return found


def answered(flow: http.HTTPFlow) -> bool:
    """An earlier addon already answered (or killed) the flow."""
    return flow.response is not None or flow.error is not None
