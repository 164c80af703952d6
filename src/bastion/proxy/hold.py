"""A review: what the deciding addon hands to the hold addon (``addons/approval.py``).

A decider (Authorize, or McpGovernance for MCP ``tools/call``) never holds or refuses a review
itself: it leaves the review decision and a Hold, and the hold addon holds the call for a human, or
refuses it at once when no approvals are configured. The decider knows how its caller expects to
be refused, so it leaves two callbacks: ``answer`` refuses the call (the refusal's decision, a
message and an error code, in the caller's format), ``resume`` readies it to go on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bastion.proxy.decision import Decision, PolicyRequest


def _nothing() -> None:
    return None


@dataclass
class Hold:
    request: PolicyRequest
    decision: Decision
    answer: Callable[[Decision, str, str], None]
    resume: Callable[[], None] = _nothing
    # Extra context for the approver (the conversation's last messages for model calls).
    context: dict[str, Any] = field(default_factory=dict)
