"""A call held for a human: what the deciding addon hands to the approval addon.

The addon that decided (Authorize, or McpGovernance for MCP ``tools/call``) knows how its caller
expects to be refused, so it leaves two callbacks: ``answer`` refuses the call with a message and
an error code in the caller's format, ``resume`` readies it to go on.
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
    answer: Callable[[str, str], None]
    resume: Callable[[], None] = _nothing
    # Extra context for the approver (the conversation's last messages for model calls).
    context: dict[str, Any] = field(default_factory=dict)
