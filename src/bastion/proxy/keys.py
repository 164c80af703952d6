"""Agent keys: issued once, stored as SHA-256 hashes, looked up per request.

Keys are 32 random bytes, so a plain SHA-256 is a sound hash for them (no dictionary to guess
from). The file is re-read when it changes, so a revoke takes effect without a restart. An edit
that does not load leaves the keys loaded before serving (no key it would add works) and is
reported once to ``on_rejected`` (the proxy records it as an alert), like a rejected policy edit.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bastion.files import Stamp, replace_text, stamp

log = logging.getLogger(__name__)
KEY_PREFIX = "bst_"
RELOAD_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Identity:
    agent_id: str
    role: str
    key_id: str


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def key_id(key_hash: str) -> str:
    """A short, public name for a key: the first 12 hex digits of its hash."""
    return key_hash.removeprefix("sha256:")[:12]


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be a mapping with a 'keys' list")
    entries = data.get("keys") or []
    if not isinstance(entries, list):
        raise ValueError(f"{path}: 'keys' must be a list")
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: key entry {number} must be a mapping")
    return [dict(e) for e in entries]


def _identities(path: Path) -> dict[str, Identity]:
    """The valid keys by hash; raises ValueError naming what is wrong with the file."""
    try:
        entries = _read(path)
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot be read ({e})") from None
    found = {}
    for number, entry in enumerate(entries, 1):
        if entry.get("revoked"):
            continue
        if not isinstance(entry.get("hash"), str) or not isinstance(entry.get("agent"), str):
            raise ValueError(f"{path}: key entry {number} needs 'hash' and 'agent' (strings)")
        found[entry["hash"]] = Identity(entry["agent"], str(entry.get("role", "")), str(entry.get("id", "")))
    return found


def _write(path: Path, entries: list[dict[str, Any]]) -> None:
    text = "# Agent keys, stored as SHA-256 hashes. Managed by `bastion keys create|list|revoke`.\n"
    replace_text(path, text + yaml.safe_dump({"keys": entries}, sort_keys=False))


def create_key(path: Path, agent_id: str, role: str) -> tuple[str, str]:
    """Issue a key for ``agent_id``; returns (key, key id). Only the hash is stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    digest = hash_key(key)
    entries = _read(path)
    entries.append(
        {
            "id": key_id(digest),
            "hash": digest,
            "agent": agent_id,
            "role": role,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "revoked": False,
        }
    )
    _write(path, entries)
    return key, key_id(digest)


def revoke(path: Path, *, key_id_: str | None = None, agent_id: str | None = None) -> list[str]:
    """Revoke keys by id or every key of an agent; returns the revoked key ids."""
    entries = _read(path)
    revoked = []
    for entry in entries:
        if entry.get("revoked"):
            continue
        if (key_id_ and entry.get("id") == key_id_) or (agent_id and entry.get("agent") == agent_id):
            entry["revoked"] = True
            entry["revoked_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            revoked.append(str(entry.get("id")))
    if revoked:
        _write(path, entries)
    return revoked


def list_keys(path: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "hash"} for e in _read(path)]


class KeyStore:
    """Looks up identities by key. The proxy and the collector subscribe ``check`` to their
    Reloader (``bastion/reload.py``) and pass ``check_on_lookup=False``; otherwise a lookup re-reads
    the file at most once a second when it changed."""

    def __init__(
        self, path: Path, on_rejected: Callable[[str], None] | None = None, check_on_lookup: bool = True
    ) -> None:
        self.path = path
        self.on_rejected = on_rejected
        self.check_on_lookup = check_on_lookup
        self._lock = threading.Lock()
        self._by_hash: dict[str, Identity] = {}
        self._stamp: Stamp = None
        self._checked = 0.0
        self.reload()

    def reload(self) -> None:
        """Load the file; raises ValueError if it cannot be served (at start-up: no proxy without keys)."""
        current = stamp(self.path)
        by_hash = _identities(self.path)
        with self._lock:
            self._by_hash, self._stamp, self._checked = by_hash, current, time.monotonic()

    def check(self) -> bool:
        """Reload if the file changed; whether it did. An edit that does not load is reported once,
        and the keys loaded before keep serving: nobody is locked out, and no key it adds gets in."""
        current = stamp(self.path)
        with self._lock:  # one caller handles each version of the file
            self._checked = time.monotonic()
            if current == self._stamp:
                return False
            self._stamp = current
        try:
            by_hash = _identities(self.path)
        except ValueError as e:
            message = f"keys file edit rejected; the keys loaded before keep serving: {e}"
            log.error("%s", message)
            if self.on_rejected is not None:
                self.on_rejected(message)
            return False
        with self._lock:
            self._by_hash = by_hash
        return True

    def lookup(self, key: str) -> Identity | None:
        if self.check_on_lookup and time.monotonic() - self._checked >= RELOAD_CHECK_SECONDS:
            self.check()
        return self._by_hash.get(hash_key(key))
