"""Decisions are plain values that carry their reason."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REVIEW = "review"
    # The call was refused before any policy ran: bad input, unknown route, missing key.
    ERROR = "error"


@dataclass(frozen=True)
class Decision:
    effect: Effect
    rule: str
    reason: str
    policy_version: str = ""

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW


def allow(rule: str, reason: str, policy_version: str = "") -> Decision:
    return Decision(Effect.ALLOW, rule, reason, policy_version)


def deny(rule: str, reason: str, policy_version: str = "") -> Decision:
    return Decision(Effect.DENY, rule, reason, policy_version)


def refuse(rule: str, reason: str) -> Decision:
    """A refusal before policy: the rule names what was wrong with the request."""
    return Decision(Effect.ERROR, rule, reason)
