"""Casbin policy decisions, with the matching rule as the reason.

The model and rules are the standard Casbin files in the policies directory. The engine is
rebuilt when either file changes; an edit that does not load leaves the previous one serving.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import casbin
from casbin.effect import AllowOverrideEffector

from bastion.proxy.decision import Decision, allow, deny

log = logging.getLogger(__name__)
# pycasbin logs every request, and every deny as a warning; Bastion records decisions itself.
logging.getLogger("casbin").setLevel(logging.ERROR)

MODEL_FILE = "model.conf"
POLICY_FILE = "policy.csv"
NO_MATCH_RULE = "default-deny"


def policy_version(policies_dir: Path) -> str:
    """A content hash of the model and the rules."""
    digest = hashlib.sha256()
    for name in (MODEL_FILE, POLICY_FILE):
        digest.update((policies_dir / name).read_bytes())
    return digest.hexdigest()[:12]


def _describe(rule: list[str]) -> str:
    """The rule's name when the policy has one (its last field), else the whole line."""
    return rule[4] if len(rule) >= 5 and rule[4] else "p, " + ", ".join(rule)


class PolicyEngine:
    def __init__(self, policies_dir: Path) -> None:
        self.policies_dir = policies_dir
        self._lock = threading.Lock()
        self._enforcer, self._explainer, self.version = self._load()

    def _load(self) -> tuple[casbin.Enforcer, casbin.Enforcer, str]:
        model = str(self.policies_dir / MODEL_FILE)
        rules = str(self.policies_dir / POLICY_FILE)
        enforcer = casbin.Enforcer(model, rules)
        # Casbin explains denies but not allows when deny overrides allow; a second enforcer
        # over the same files with a first-allow-wins effect names the allowing rule.
        explainer = casbin.Enforcer(model, rules)
        explainer.set_effector(AllowOverrideEffector())
        return enforcer, explainer, policy_version(self.policies_dir)

    def reload(self) -> None:
        loaded = self._load()
        with self._lock:
            self._enforcer, self._explainer, self.version = loaded
        log.info("policy loaded, version %s", self.version)

    def decide(self, agent_id: str, role: str, obj: str, act: str) -> Decision:
        with self._lock:
            enforcer, explainer, version = self._enforcer, self._explainer, self.version
            for e in (enforcer, explainer):
                if role and not e.has_grouping_policy(agent_id, f"role:{role}"):
                    e.add_grouping_policy(agent_id, f"role:{role}")
        allowed, explain = enforcer.enforce_ex(agent_id, obj, act)
        if not allowed:
            if explain:
                rule = _describe(explain)
                return deny(rule, f"denied by rule '{rule}'", version)
            return deny(NO_MATCH_RULE, f"no rule allows {act} on {obj} for {agent_id}", version)
        _, explain = explainer.enforce_ex(agent_id, obj, act)
        rule = _describe(explain) if explain else "allow"
        return allow(rule, f"allowed by rule '{rule}'", version)
