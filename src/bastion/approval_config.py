"""The ``approvals`` section of ``policies/bastion.yaml``, read by the proxy and the collector.

.. code-block:: yaml

    approvals:
      timeout_seconds: 300          # how long a held call waits for a human (default 300)
      context_messages: 5           # last conversation messages stored with a held model call
      webhook_url: https://hooks.slack.com/...   # or env BASTION_APPROVAL_WEBHOOK_URL
      rules:
        large-payments-need-approval:
          timeout_seconds: 60
          scope: {calls: 5, minutes: 30}   # approving once lets the agent's next 5 calls under
                                           # this rule through, for 30 minutes at most

Without the section, a review is refused at once with ``approval_required``, as before approvals.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.files import ConfigError, read_bastion_yaml

WEBHOOK_ENV = "BASTION_APPROVAL_WEBHOOK_URL"
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Scope:
    calls: int | None = None
    minutes: float | None = None

    def as_json(self) -> dict[str, Any] | None:
        if self.calls is None and self.minutes is None:
            return None
        return {"calls": self.calls, "minutes": self.minutes}


@dataclass(frozen=True)
class RuleApproval:
    timeout_seconds: float
    scope: Scope = field(default_factory=Scope)


@dataclass(frozen=True)
class ApprovalConfig:
    enabled: bool = False
    timeout_seconds: float = DEFAULT_TIMEOUT
    context_messages: int = 5
    webhook_url: str | None = None
    rules: dict[str, RuleApproval] = field(default_factory=dict)

    def for_rule(self, rule: str) -> RuleApproval:
        return self.rules.get(rule) or RuleApproval(self.timeout_seconds)


def _number(path: Path, key: str, value: Any, cast: type[int] | type[float]) -> Any:
    if value is None:
        return None
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: {key} has value {value!r}. Not a valid number.") from None
    if number <= 0:
        raise ConfigError(f"{path}: {key} has value {value!r}. It must be positive.")
    return number


def load(policies_dir: Path) -> ApprovalConfig:
    path, raw = read_bastion_yaml(policies_dir, missing_ok=True)
    section = raw.get("approvals") if isinstance(raw, dict) else None
    webhook = os.environ.get(WEBHOOK_ENV) or None
    if section is None:
        return ApprovalConfig(webhook_url=webhook)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: approvals must be a mapping")
    timeout = _number(path, "approvals.timeout_seconds", section.get("timeout_seconds"), float) or DEFAULT_TIMEOUT
    messages = section.get("context_messages", 5)
    rules: dict[str, RuleApproval] = {}
    raw_rules = section.get("rules") or {}
    if not isinstance(raw_rules, dict):
        raise ConfigError(f"{path}: approvals.rules must map rule names to settings")
    for name, raw_rule in raw_rules.items():
        where = f"approvals.rules.{name}"
        raw_rule = raw_rule or {}
        if not isinstance(raw_rule, dict):
            raise ConfigError(f"{path}: {where} must be a mapping")
        scope = raw_rule.get("scope") or {}
        if scope == "call":
            scope = {}
        if not isinstance(scope, dict):
            raise ConfigError(f"{path}: {where}.scope must be 'call' or a mapping with calls and/or minutes")
        rules[str(name)] = RuleApproval(
            _number(path, f"{where}.timeout_seconds", raw_rule.get("timeout_seconds"), float) or timeout,
            Scope(
                _number(path, f"{where}.scope.calls", scope.get("calls"), int),
                _number(path, f"{where}.scope.minutes", scope.get("minutes"), float),
            ),
        )
    return ApprovalConfig(
        enabled=bool(section.get("enabled", True)),
        timeout_seconds=timeout,
        context_messages=int(messages),
        webhook_url=webhook or section.get("webhook_url") or None,
        rules=rules,
    )


def call_digest(agent_id: str, target: str, action: str, arguments: Any) -> str:
    """What an approval is bound to: a SHA-256 of the exact call (agent, target, action, arguments,
    in canonical JSON). The collector records it when a call is held; the proxy lets a call go on
    only when the approved record's digest is its own call's."""
    canonical = json.dumps(
        [agent_id, target, action, arguments], sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
