"""What the proxy reloads while running, all through the one mechanism of ``bastion/reload.py``.

Every consumer of the policies folder subscribes: the policy (``policy.csv``, ``model.conf``,
lists), the agent keys, ``pii.yaml``, and ``bastion.yaml`` (routes, MCP servers, limits and the
approvals section, validated together and swapped together). A bad edit is rejected: the last good
version keeps serving and an alert span names the problem.
"""

from __future__ import annotations

from pathlib import Path

from bastion import approval_config, semconv
from bastion.proxy import config as gateway_config
from bastion.proxy.budget_guard import BudgetGuard
from bastion.proxy.config import LiveConfig
from bastion.proxy.control import Control
from bastion.proxy.keys import KeyStore
from bastion.proxy.limiter import Limiter
from bastion.proxy.pii.reload import PiiReloader
from bastion.proxy.policy import PolicyEngine
from bastion.reload import Check, Reloader, when_changed


def bastion_yaml(
    policies_dir: Path,
    keys_file: Path | None,
    live: LiveConfig,
    control: Control | None,
    limiter: Limiter | None = None,
    guard: BudgetGuard | None = None,
) -> Check:
    """Routes, MCP servers, limits, prices and budgets (into ``live``, ``limiter`` and ``guard``) and
    the approvals settings (into ``control``) from bastion.yaml; all are read before any is swapped,
    so a bad edit changes nothing."""

    def load() -> None:
        config = gateway_config.load(policies_dir, keys_file)  # ConfigError is a ValueError
        approvals = approval_config.load(policies_dir)
        priced = guard.read() if guard is not None else None
        live.current = config
        if guard is not None:
            guard.apply(priced)
        if limiter is not None:
            limiter.reload(config.limits)
        if control is not None:
            control.config = approvals

    return when_changed(lambda: [policies_dir / "bastion.yaml"], load)


def subscribe(
    reloader: Reloader,
    policies_dir: Path,
    keys_file: Path | None,
    live: LiveConfig,
    engine: PolicyEngine,
    keys: KeyStore,
    pii: PiiReloader,
    control: Control | None,
    limiter: Limiter | None = None,
    guard: BudgetGuard | None = None,
) -> None:
    reloader.subscribe("policy", engine.reload_if_changed, semconv.ALERT_POLICY_REJECTED)
    reloader.subscribe("keys", keys.check, semconv.ALERT_KEYS_REJECTED)  # reports a bad edit itself
    reloader.subscribe("pii.yaml", pii.check, semconv.ALERT_POLICY_REJECTED)
    reloader.subscribe("bastion.yaml", bastion_yaml(policies_dir, keys_file, live, control, limiter, guard))
