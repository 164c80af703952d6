"""``policies/pii.yaml``: what happens to each type of personal data, parsed once into typed values.

A missing file means no redaction. A file that does not parse or validate raises
:class:`ConfigError` naming the key and the value, and the proxy does not start (fail closed).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from bastion.proxy.config import ConfigError
from bastion.settings import Secret

FILE_NAME = "pii.yaml"
MIN_SALT_BYTES = 16
DIRECTIONS = ("request", "response")
# Every type the detector can find (bastion.proxy.pii.detector builds a recognizer for each).
NER_ENTITIES = ("PERSON", "LOCATION", "ORGANIZATION", "NRP")
PATTERN_ENTITIES = (
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS", "URL", "CRYPTO",
    "MAC_ADDRESS", "US_BANK_NUMBER", "US_PASSPORT", "DATE_TIME", "DATE_OF_BIRTH", "AGE", "UK_POSTCODE",
    "US_ZIP_CODE", "POSTCODE",
)  # fmt: skip
SECRET_ENTITIES = (
    "AWS_ACCESS_KEY", "GITHUB_TOKEN", "SLACK_TOKEN", "OPENAI_API_KEY", "JWT", "PRIVATE_KEY", "GOOGLE_API_KEY",
    "STRIPE_KEY", "AZURE_CONNECTION_STRING", "CREDENTIAL",
)  # fmt: skip
KNOWN_ENTITIES = frozenset({*NER_ENTITIES, *PATTERN_ENTITIES, *SECRET_ENTITIES})


class Action(StrEnum):
    REDACT = "redact"  # <EMAIL_ADDRESS>
    MASK = "mask"  # ****************.com
    HASH = "hash"  # salted SHA-256
    PSEUDONYMIZE = "pseudonymize"  # <EMAIL_ADDRESS_1>, restored in the answer
    BLOCK = "block"  # the call is refused
    ALLOW = "allow"  # counted, left as it is


class OnError(StrEnum):
    BLOCK = "block"  # fail closed: the call is refused
    ALLOW = "allow"  # fail open: the call passes unredacted, and that is recorded


@dataclass(frozen=True)
class EntityRule:
    request: Action
    response: Action
    threshold: float = 0.5

    def action(self, direction: str) -> Action:
        return self.request if direction == "request" else self.response


@dataclass(frozen=True)
class Override:
    agent: str | None
    role: str | None
    entities: Mapping[str, EntityRule]

    def matches(self, agent: str, role: str) -> bool:
        return (self.agent is None or self.agent == agent) and (self.role is None or self.role == role)


@dataclass(frozen=True)
class PiiConfig:
    entities: Mapping[str, EntityRule]
    overrides: tuple[Override, ...] = ()
    salt: Secret | None = None
    timeout_seconds: float = 2.0
    on_error: OnError = OnError.BLOCK
    route_on_error: Mapping[str, OnError] = field(default_factory=dict)
    holdback_chars: int = 64
    cache_size: int = 4096
    pseudonym_ttl_seconds: float = 3600.0
    vault_max_conversations: int = 10_000
    vault_max_bytes: int = 64 << 20
    # MCP tools/call arguments and results: "audit" counts and keeps them out of the store only;
    # "enforce" also applies the request/response actions to what the tool server and agent see.
    mcp: str = "audit"
    # For tests: every analysis raises, to check that failures fail closed.
    force_error: bool = False

    def rules_for(self, agent: str, role: str) -> dict[str, EntityRule]:
        """The entity rules for one agent: the defaults, then role overrides, then agent overrides."""
        rules = dict(self.entities)
        ordered = sorted(self.overrides, key=lambda o: o.agent is not None)
        for override in ordered:
            if override.matches(agent, role):
                rules.update(override.entities)
        return rules

    def on_error_for(self, route: str | None) -> OnError:
        return self.route_on_error.get(route or "", self.on_error)

    @property
    def all_entities(self) -> set[str]:
        names = set(self.entities)
        for override in self.overrides:
            names |= set(override.entities)
        return names


def _where(path: Path, key: str) -> str:
    return f"{path}: {key}"


def _action(path: Path, key: str, value: Any) -> Action:
    try:
        return Action(str(value))
    except ValueError:
        choices = ", ".join(a.value for a in Action)
        raise ConfigError(f"{_where(path, key)} has value {value!r}. Not one of {choices}.") from None


def _threshold(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{_where(path, key)} has value {value!r}. Not a number between 0 and 1.")
    return float(value)


def _entity(path: Path, key: str, raw: Any, base: EntityRule | None, known: set[str]) -> EntityRule:
    name = key.rsplit(".", 1)[-1]
    if name not in known:
        raise ConfigError(f"{_where(path, key)}: unknown entity type {name!r}. Known: {', '.join(sorted(known))}.")
    if isinstance(raw, str):
        raw = {"action": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{_where(path, key)} must be an action or a mapping (action, request, response, threshold)")
    unknown = sorted(set(raw) - {"action", "request", "response", "threshold"})
    if unknown:
        raise ConfigError(f"{_where(path, key)} has unknown keys {unknown}; use action, request, response, threshold")
    both = _action(path, f"{key}.action", raw["action"]) if "action" in raw else None
    default = base or EntityRule(Action.ALLOW, Action.ALLOW)
    request = _action(path, f"{key}.request", raw["request"]) if "request" in raw else both or default.request
    response = _action(path, f"{key}.response", raw["response"]) if "response" in raw else both or default.response
    threshold = _threshold(path, f"{key}.threshold", raw["threshold"]) if "threshold" in raw else default.threshold
    if base is None and both is None and not {"request", "response"} & set(raw):
        raise ConfigError(f"{_where(path, key)} needs an action (or request/response actions)")
    return EntityRule(request, response, threshold)


def _entities(path: Path, key: str, raw: Any, base: Mapping[str, EntityRule], known: set[str]) -> dict[str, EntityRule]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{_where(path, key)} must be a mapping of entity type -> action")
    return {str(n): _entity(path, f"{key}.{n}", v, base.get(str(n)), known) for n, v in raw.items()}


def parse(
    raw: Any, path: Path, known: Iterable[str] = KNOWN_ENTITIES, environ: Mapping[str, str] | None = None
) -> PiiConfig:
    """Validate the parsed YAML of ``path``; ``known`` are the entity types the detector supports."""
    env = os.environ if environ is None else environ
    known = set(known)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    allowed = {
        "entities", "overrides", "salt_env", "timeout_ms", "on_error", "routes", "holdback_chars",
        "cache_size", "pseudonym_ttl_seconds", "mcp", "force_error", "vault_max_conversations", "vault_max_mb",
    }  # fmt: skip
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown}; known keys are {sorted(allowed)}")
    entities = _entities(path, "entities", raw.get("entities") or {}, {}, known)
    overrides = []
    for i, item in enumerate(raw.get("overrides") or []):
        key = f"overrides[{i}]"
        if not isinstance(item, dict) or not ({"agent", "role"} & set(item)) or "entities" not in item:
            raise ConfigError(f"{_where(path, key)} needs agent and/or role, and entities")
        extra = sorted(set(item) - {"agent", "role", "entities"})
        if extra:
            raise ConfigError(f"{_where(path, key)} has unknown keys {extra}")
        rules = _entities(path, f"{key}.entities", item["entities"], entities, known)
        agent, role = item.get("agent"), item.get("role")
        overrides.append(Override(str(agent) if agent else None, str(role) if role else None, rules))
    config = PiiConfig(entities=entities, overrides=tuple(overrides))
    hashes = any(r.request is Action.HASH or r.response is Action.HASH for r in _all_rules(config))
    salt_env = raw.get("salt_env")
    if salt_env is not None or hashes:
        name = str(salt_env or "BASTION_PII_SALT")
        value = env.get(name, "")
        if len(value.encode()) < MIN_SALT_BYTES:
            raise ConfigError(
                f"{_where(path, 'salt_env')}: the hash action needs a salt of at least {MIN_SALT_BYTES} bytes "
                f"in the environment variable {name} (it has {len(value.encode())})"
            )
        config = replace(config, salt=Secret(value))
    timeout = raw.get("timeout_ms", 2000)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
        raise ConfigError(f"{_where(path, 'timeout_ms')} has value {timeout!r}. Not a number >= 0.")
    on_error = _on_error(path, "on_error", raw.get("on_error", "block"))
    routes = raw.get("routes") or {}
    if not isinstance(routes, dict):
        raise ConfigError(f"{_where(path, 'routes')} must map route names to {{on_error: block|allow}}")
    route_on_error = {}
    for name, spec in routes.items():
        if not isinstance(spec, dict) or set(spec) != {"on_error"}:
            raise ConfigError(f"{_where(path, f'routes.{name}')} must be {{on_error: block|allow}}")
        route_on_error[str(name)] = _on_error(path, f"routes.{name}.on_error", spec["on_error"])
    ints = {}
    for key, default, low in (
        ("holdback_chars", 64, 0),
        ("cache_size", 4096, 0),
        ("vault_max_conversations", 10_000, 1),
        ("vault_max_mb", 64, 1),
    ):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{_where(path, key)} has value {value!r}. Not an integer >= {low}.")
        ints[key] = value
    ttl = raw.get("pseudonym_ttl_seconds", 3600)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
        raise ConfigError(f"{_where(path, 'pseudonym_ttl_seconds')} has value {ttl!r}. Not a number > 0.")
    mcp = raw.get("mcp", "audit")
    if mcp not in ("audit", "enforce"):
        raise ConfigError(f"{_where(path, 'mcp')} has value {mcp!r}. Not one of audit, enforce.")
    return replace(
        config,
        timeout_seconds=float(timeout) / 1000,
        on_error=on_error,
        route_on_error=route_on_error,
        holdback_chars=ints["holdback_chars"],
        cache_size=ints["cache_size"],
        pseudonym_ttl_seconds=float(ttl),
        vault_max_conversations=ints["vault_max_conversations"],
        vault_max_bytes=ints["vault_max_mb"] << 20,
        mcp=str(mcp),
        force_error=bool(raw.get("force_error", False)),
    )


def _on_error(path: Path, key: str, value: Any) -> OnError:
    try:
        return OnError(str(value))
    except ValueError:
        raise ConfigError(f"{_where(path, key)} has value {value!r}. Not one of block, allow.") from None


def _all_rules(config: PiiConfig) -> list[EntityRule]:
    return [*config.entities.values(), *(r for o in config.overrides for r in o.entities.values())]


def load(policies_dir: Path, known: Iterable[str] = KNOWN_ENTITIES) -> PiiConfig | None:
    """The configuration in ``policies_dir/pii.yaml``, or None when there is no such file."""
    path = policies_dir / FILE_NAME
    if not path.exists():
        return None
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: {e}") from e
    return parse(raw or {}, path, known)
