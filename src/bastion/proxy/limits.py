"""The ``limits:`` section of ``policies/bastion.yaml``, parsed once into typed values.

limits:
  defaults:                    # every agent, unless its role, agent id or key says otherwise
    requests_per_second: 20
    requests_per_minute: 600
    tokens_per_minute: 200000  # input + output; estimated before the call, corrected from usage
    concurrency: 8             # calls of one agent in flight at once
    queue: 16                  # calls of one agent waiting for a slot (beyond: refused at once)
    queue_timeout_seconds: 5   # how long a call waits for a slot before it is refused
    max_steps: 200             # model calls + tool calls in one conversation
    max_repeats: 5             # the same tool with the same arguments in one conversation
    error_streak: 5            # upstream errors in a row before the agent is paused
    error_cooldown_seconds: 60
    suspend_on_trip: false     # a tripped breaker also suspends the agent until a human resumes it
  roles: {analyst: {requests_per_minute: 60}}
  agents: {batch-bot: {concurrency: 2}}
  keys: {3f2a9c1b7d4e: {tokens_per_minute: 10000}}   # a key's id (bastion keys list)
  targets:                     # shared by every agent calling the target
    - {match: "model:gpt-4o*", tokens_per_minute: 400000}
    - {match: "tool:tools/search", requests_per_second: 2}
    - {match: "http:api.weather.example/*", requests_per_minute: 60}
  upstreams:                   # each upstream (host and port) on its own
    concurrency: 64
    queue: 128
    queue_timeout_seconds: 10
    failures: 5                # upstream errors in a row open its circuit
    cooldown_seconds: 30       # how long an open circuit fails fast

An agent's settings are the defaults, overridden key by key by its role's, its agent id's and
then its key's entry. Every limit is off unless set.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from bastion.files import ConfigError, read_bastion_yaml


@dataclass(frozen=True)
class AgentLimits:
    requests_per_second: float | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    concurrency: int | None = None
    queue: int = 0
    queue_timeout_seconds: float = 5.0
    max_steps: int | None = None
    max_repeats: int | None = None
    error_streak: int | None = None
    error_cooldown_seconds: float = 60.0
    suspend_on_trip: bool = False


@dataclass(frozen=True)
class TargetLimits:
    match: str  # a glob over the policy object: model:<name>, tool:<server>/<name>, http:<host><path>
    requests_per_second: float | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None


@dataclass(frozen=True)
class UpstreamLimits:
    concurrency: int | None = None
    queue: int = 0
    queue_timeout_seconds: float = 5.0
    failures: int | None = None
    cooldown_seconds: float = 30.0


@dataclass(frozen=True)
class LimitSettings:
    defaults: AgentLimits = AgentLimits()
    roles: tuple[tuple[str, dict[str, Any]], ...] = ()
    agents: tuple[tuple[str, dict[str, Any]], ...] = ()
    keys: tuple[tuple[str, dict[str, Any]], ...] = ()
    targets: tuple[TargetLimits, ...] = ()
    upstreams: UpstreamLimits = UpstreamLimits()

    def for_agent(self, agent_id: str, role: str, key_id: str) -> AgentLimits:
        """The defaults with the role's, the agent's and the key's entries laid over them."""
        found = self.defaults
        for table, name in ((self.roles, role), (self.agents, agent_id), (self.keys, key_id)):
            for entry_name, values in table:
                if entry_name == name:
                    found = replace(found, **values)
        return found

    @property
    def enabled(self) -> bool:
        return self != LimitSettings()


_AGENT_KEYS = {f.name: f.type for f in fields(AgentLimits)}
_TARGET_KEYS = {f.name: f.type for f in fields(TargetLimits) if f.name != "match"}
_UPSTREAM_KEYS = {f.name: f.type for f in fields(UpstreamLimits)}


def _value(where: str, key: str, kind: str, raw: Any) -> Any:
    """``raw`` checked against the field's declared type (as a string: ``float | None``, ``int``, ``bool``)."""
    if "bool" in kind:
        if not isinstance(raw, bool):
            raise ConfigError(f"{where}.{key} has value {raw!r}. Not a boolean (true or false).")
        return raw
    if raw is None and "None" in kind:
        return None
    number = "int" if kind.startswith("int") else "float"
    if isinstance(raw, bool) or not isinstance(raw, int | float) or (number == "int" and not isinstance(raw, int)):
        raise ConfigError(f"{where}.{key} has value {raw!r}. Not a{'n integer' if number == 'int' else ' number'}.")
    if raw < 0 or (raw == 0 and key != "queue"):
        needed = "0 or more" if key == "queue" else "positive"
        raise ConfigError(f"{where}.{key} has value {raw!r}. It must be {needed}.")
    return raw


def _entry(where: str, raw: Any, allowed: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping of {', '.join(sorted(allowed))}")
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; known: {', '.join(sorted(allowed))}")
    return {k: _value(where, k, str(allowed[k]), v) for k, v in raw.items()}


def _named(where: str, raw: Any) -> tuple[tuple[str, dict[str, Any]], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping of names to limits")
    return tuple((str(name), _entry(f"{where}.{name}", v, _AGENT_KEYS)) for name, v in raw.items())


def parse(path: Path, raw: Any) -> LimitSettings:
    """The ``limits`` section's value; raises ConfigError naming the key and the bad value."""
    where = f"{path}: limits"
    if raw is None:
        return LimitSettings()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping (defaults, roles, agents, keys, targets, upstreams)")
    unknown = sorted(set(raw) - {"defaults", "roles", "agents", "keys", "targets", "upstreams"})
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}")
    defaults = AgentLimits(**_entry(f"{where}.defaults", raw.get("defaults") or {}, _AGENT_KEYS))
    targets = []
    for i, t in enumerate(raw.get("targets") or []):
        if not isinstance(t, dict) or not isinstance(t.get("match"), str) or not t["match"]:
            raise ConfigError(f"{where}.targets[{i}] needs a match, e.g. {{match: 'model:gpt-4o*', ...}}")
        values = _entry(f"{where}.targets[{i}]", {k: v for k, v in t.items() if k != "match"}, _TARGET_KEYS)
        targets.append(TargetLimits(match=t["match"], **values))
    upstreams = UpstreamLimits(**_entry(f"{where}.upstreams", raw.get("upstreams") or {}, _UPSTREAM_KEYS))
    return LimitSettings(
        defaults=defaults,
        roles=_named(f"{where}.roles", raw.get("roles")),
        agents=_named(f"{where}.agents", raw.get("agents")),
        keys=_named(f"{where}.keys", raw.get("keys")),
        targets=tuple(targets),
        upstreams=upstreams,
    )


def load(policies_dir: Path) -> LimitSettings:
    """The ``limits`` section of ``policies_dir/bastion.yaml`` (no limits without the file or section)."""
    path, raw = read_bastion_yaml(policies_dir, missing_ok=True)
    return parse(path, raw.get("limits") if isinstance(raw, dict) else None)
