"""The ``budgets`` section of ``policies/bastion.yaml``, read by the proxy and the collector, and the
budget windows (UTC calendar days, ISO weeks from Monday, calendar months).

.. code-block:: yaml

    budgets:
      assistants-daily:
        per: agent              # agent | role | key: each one has its own budget
        period: day             # day | week | month, in UTC
        usd: 5.00               # or tokens: 200000 (input + output)
        alert_at: 0.8           # soft threshold: an alert (and the webhook) at 80% of the limit
        local_allowance: 0.25   # what one proxy may spend without hearing from the collector
                                # (default 5% of the limit), in the budget's unit
        only: [agent-1]         # optional: only these agents (roles, key ids); default all

The collector sums spend per budget and subject from the spans it stores; each proxy enforces from
the collector's recent view plus what it spent itself since (``proxy/budget_guard.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import yaml

from bastion.files import ConfigError, expand_env

PER: Final = ("agent", "role", "key")
PERIODS: Final = ("day", "week", "month")
USD: Final = "usd"
TOKENS: Final = "tokens"
DEFAULT_ALERT_AT: Final = 0.8
DEFAULT_ALLOWANCE: Final = 0.05
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_KEYS = {"per", "period", USD, TOKENS, "alert_at", "local_allowance", "only"}


@dataclass(frozen=True)
class Budget:
    name: str
    per: str
    period: str
    unit: str  # usd | tokens
    limit: float
    alert_at: float = DEFAULT_ALERT_AT
    local_allowance: float = 0.0
    only: tuple[str, ...] = ()

    @property
    def rule(self) -> str:
        """The rule a refusal names (``budget:<name>``)."""
        return f"budget:{self.name}"

    def applies(self, subject: str) -> bool:
        return not self.only or subject in self.only

    def window(self, now: float) -> tuple[float, float]:
        return window(self.period, now)


def window(period: str, now: float) -> tuple[float, float]:
    """The period that holds ``now`` (Unix seconds) as (start, end) Unix seconds, in UTC."""
    moment = datetime.fromtimestamp(now, UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif period == "month":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"period {period!r} is not one of {PERIODS}")
    return start.timestamp(), end.timestamp()


def parse(raw: Any, where: str = "budgets") -> tuple[Budget, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must map budget names to settings (per, period, usd or tokens)")
    return tuple(_budget(f"{where}.{name}", str(name), entry) for name, entry in raw.items())


def _budget(key: str, name: str, entry: Any) -> Budget:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{key}: the name must be letters, digits, '.', '_' or '-'")
    if not isinstance(entry, dict):
        raise ConfigError(f"{key} must be a mapping with per, period and usd or tokens")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise ConfigError(f"{key} has unknown keys {unknown}; use {', '.join(sorted(_KEYS))}")
    per, period = entry.get("per", "agent"), entry.get("period", "day")
    if per not in PER:
        raise ConfigError(f"{key}.per has value {per!r}. Not one of {' | '.join(PER)}.")
    if period not in PERIODS:
        raise ConfigError(f"{key}.period has value {period!r}. Not one of {' | '.join(PERIODS)}.")
    units = [u for u in (USD, TOKENS) if entry.get(u) is not None]
    if len(units) != 1:
        raise ConfigError(f"{key} needs exactly one limit: usd (US dollars) or tokens (input + output)")
    unit = units[0]
    limit = _positive(f"{key}.{unit}", entry[unit])
    alert_at = _positive(f"{key}.alert_at", entry.get("alert_at", DEFAULT_ALERT_AT))
    if alert_at > 1:
        raise ConfigError(f"{key}.alert_at has value {alert_at!r}. It is a fraction of the limit, at most 1.")
    allowance = entry.get("local_allowance")
    allowance = limit * DEFAULT_ALLOWANCE if allowance is None else _positive(f"{key}.local_allowance", allowance)
    only = entry.get("only") or []
    if not isinstance(only, list):
        raise ConfigError(f"{key}.only must be a list of {per} names")
    return Budget(name, per, period, unit, limit, alert_at, allowance, tuple(str(s) for s in only))


def _positive(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{key} has value {value!r}. Not a positive number.")
    return float(value)


def load(policies_dir: Path) -> tuple[Budget, ...]:
    path = policies_dir / "bastion.yaml"
    try:
        raw = yaml.safe_load(expand_env(path.read_text())) or {}
    except FileNotFoundError:
        return ()
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: {e}") from e
    try:
        return parse(raw.get("budgets") if isinstance(raw, dict) else None)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
