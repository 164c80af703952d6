"""Who may use the collector's API: operators with a role, and the proxies' service credential.

Operators live in ``policies/operators.yaml``: each has a name, a role and a token, printed once by
``bastion operators add`` and stored as a salted scrypt hash. A token reads ``bop_<id>_<secret>``:
the id names the entry to check, so a lookup costs one scrypt, and a verified token is remembered
(as its SHA-256) until the file changes. Approver tokens from ``policies/approvers.yaml``
(``bap_<id>_<secret>``, written by earlier versions) keep working with the approver role.

Roles, each including the ones before it:

- ``viewer``: read the audit trail, traces, alerts, approvals and agents; export and verify;
- ``approver``: also decide held calls and suspend, resume or guide agents;
- ``admin``: also manage operators.

``proxy`` is apart: the service credential that proxy replicas share (``BASTION_PROXY_TOKEN`` or a
file), the only one that may send Bastion's own spans, hold calls for approval and read what
proxies need. Agent keys (``bst_...``) are none of these.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from bastion.files import Stamp, replace_text, stamp
from bastion.settings import Secret

FILE_NAME = "operators.yaml"
LEGACY_FILE_NAME = "approvers.yaml"
TOKEN_PREFIX = "bop_"
LEGACY_TOKEN_PREFIX = "bap_"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
# Long enough that guessing is hopeless; shorter proxy tokens are refused at start-up.


class Role(StrEnum):
    VIEWER = "viewer"
    APPROVER = "approver"
    ADMIN = "admin"
    PROXY = "proxy"


# Operator roles in order of power; the proxy credential is not on this ladder.
OPERATOR_ROLES = (Role.VIEWER, Role.APPROVER, Role.ADMIN)


@dataclass(frozen=True)
class Principal:
    """Who presented a credential: an operator (id, name, role) or the proxy service."""

    id: str
    name: str
    role: Role

    def has(self, role: Role) -> bool:
        """Whether this principal may act as ``role`` (an operator role includes the lower ones)."""
        if role is Role.PROXY or self.role is Role.PROXY:
            return self.role is role
        return OPERATOR_ROLES.index(self.role) >= OPERATOR_ROLES.index(role)


PROXY = Principal("proxy", "proxy", Role.PROXY)


def _hash(secret: str, salt: bytes) -> str:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT).hex()  # type: ignore[arg-type]


def _read(path: Path, key: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text()) or {}
    entries = data.get(key) or [] if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: {key!r} must be a list")
    return [dict(e) for e in entries]


def parse_role(value: str) -> Role:
    try:
        role = Role(value)
    except ValueError:
        role = None
    if role not in OPERATOR_ROLES:
        choices = ", ".join(OPERATOR_ROLES)
        raise ValueError(f"Role {value!r} is not an operator role. Use one of {choices}.")
    assert role is not None
    return role


def add_operator(path: Path, name: str, role: Role) -> str:
    """Add an operator; returns the token (shown once, stored only as a hash)."""
    if not name.strip():
        raise ValueError("An operator needs a non-empty --name.")
    parse_role(role)
    entries = _read(path, "operators")
    operator_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(24)
    salt = os.urandom(16)
    entries.append(
        {
            "id": operator_id,
            "name": name,
            "role": str(role),
            "salt": salt.hex(),
            "hash": "scrypt:" + _hash(secret, salt),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    _write(path, entries)
    return f"{TOKEN_PREFIX}{operator_id}_{secret}"


def remove_operator(path: Path, which: str) -> list[str]:
    """Remove the operators whose id or name is ``which``; returns the removed ids."""
    entries = _read(path, "operators")
    kept = [e for e in entries if which not in (str(e.get("id")), str(e.get("name")))]
    removed = [str(e.get("id")) for e in entries if e not in kept]
    if removed:
        _write(path, kept)
    return removed


def _write(path: Path, entries: list[dict[str, Any]]) -> None:
    text = "# Operators of the collector API: scrypt hashes of their tokens. Managed by `bastion operators`.\n"
    replace_text(path, text + yaml.safe_dump({"operators": entries}, sort_keys=False))
    path.chmod(0o600)


def list_operators(path: Path) -> list[Principal]:
    """Operators from ``path``, then legacy approvers from ``approvers.yaml`` beside it."""
    found = [
        Principal(str(e.get("id")), str(e.get("name")), Role(str(e.get("role")))) for e in _read(path, "operators")
    ]
    legacy = _read(path.parent / LEGACY_FILE_NAME, "approvers")
    return found + [Principal(str(e.get("id")), str(e.get("name")), Role.APPROVER) for e in legacy]


def new_proxy_token() -> str:
    return "bpx_" + secrets.token_urlsafe(32)


class Credentials:
    """Verifies bearer tokens: operators (re-read when their files change) and the proxy token."""

    def __init__(self, path: Path, proxy_token: Secret | None = None) -> None:
        self.path = path
        self.legacy_path = path.parent / LEGACY_FILE_NAME
        self.proxy_token = proxy_token
        self._lock = threading.Lock()
        self._stamps: tuple[Stamp, Stamp] | None = None
        self._entries: dict[str, dict[str, Any]] = {}
        self._verified: dict[str, Principal] = {}

    def _reload(self) -> None:
        current = (stamp(self.path), stamp(self.legacy_path))
        if current == self._stamps:
            return
        self._stamps = current
        entries = {str(e.get("id")): {**e, "role": Role.APPROVER} for e in _read(self.legacy_path, "approvers")}
        entries.update({str(e.get("id")): e for e in _read(self.path, "operators")})
        self._entries = entries
        self._verified = {}

    def verify(self, token: str) -> Principal | None:
        """The principal whose token this is, or ``None``. Raises ``ValueError`` for a broken file."""
        if self.proxy_token is not None and hmac.compare_digest(token.encode(), self.proxy_token.get().encode()):
            return PROXY
        prefix = next((p for p in (TOKEN_PREFIX, LEGACY_TOKEN_PREFIX) if token.startswith(p)), None)
        if prefix is None:
            return None
        operator_id, _, secret = token.removeprefix(prefix).partition("_")
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            self._reload()
            if (known := self._verified.get(digest)) is not None:
                return known
            entry = self._entries.get(operator_id)
        if entry is None or not secret:
            return None
        stored = str(entry.get("hash", "")).removeprefix("scrypt:")
        try:
            candidate = _hash(secret, bytes.fromhex(str(entry.get("salt", ""))))
            role = Role(str(entry.get("role")))
        except ValueError:
            return None
        if role not in OPERATOR_ROLES or not hmac.compare_digest(candidate, stored):
            return None
        principal = Principal(operator_id, str(entry.get("name")), role)
        with self._lock:
            self._verified[digest] = principal
        return principal
