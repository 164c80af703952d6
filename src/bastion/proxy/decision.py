"""Decisions are plain values that carry their reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bastion.proxy.provenance import Provenance
from bastion.proxy.session import SessionFacts


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    # Hold the call for a human. Until approvals exist, a review is refused with its own error.
    REVIEW = "review"
    # The call was refused before any policy ran: bad input, unknown route, missing key.
    ERROR = "error"


@dataclass(frozen=True)
class PolicyRequest:
    """What is being decided: who calls what, how, and with which arguments."""

    agent_id: str
    role: str
    obj: str  # model:<name> | tool:<name> | http:<host><path>
    act: str  # chat | embeddings | call | an HTTP method
    args: dict[str, Any] = field(default_factory=dict)
    # Where the arguments came from (tool calls), and the session's earlier calls; None when unknown.
    prov: Provenance | None = None
    session: SessionFacts | None = None


@dataclass(frozen=True)
class Decision:
    effect: Effect
    rule: str
    reason: str
    policy_version: str = ""
    # What shadow-mode rules would have decided, when it differs from the enforced effect.
    shadow_effect: Effect | None = None
    shadow_rule: str | None = None

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW


def allow(rule: str, reason: str, policy_version: str = "") -> Decision:
    return Decision(Effect.ALLOW, rule, reason, policy_version)


def deny(rule: str, reason: str, policy_version: str = "") -> Decision:
    return Decision(Effect.DENY, rule, reason, policy_version)


def error(rule: str, reason: str) -> Decision:
    """A refusal before policy: the rule names what was wrong with the request."""
    return Decision(Effect.ERROR, rule, reason)


DENIED_CODE = "policy_denied"
REVIEW_CODE = "approval_required"


def refusal_message(request: PolicyRequest, decision: Decision) -> str:
    """What the agent reads when ``decision`` refuses (or holds) ``request``."""
    verb = "holds" if decision.effect is Effect.REVIEW else "denied"
    return (
        f"Bastion policy {verb} {request.act} on {request.obj}: {decision.reason} "
        f"(policy version {decision.policy_version})."
    )


def refusal_code(decision: Decision) -> str:
    """The error code of a refusal: a review held for a human has its own."""
    return REVIEW_CODE if decision.effect is Effect.REVIEW else DENIED_CODE
