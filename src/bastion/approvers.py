"""Approvers: the people who may decide held calls, in ``policies/approvers.yaml``.

Each approver has a token, printed once by ``bastion approvers add`` and stored as a salted
scrypt hash. A token reads ``bap_<id>_<secret>``: the id names the entry to check, so a
lookup costs one scrypt, and a verified token is remembered (as its SHA-256) until the file
changes. Agent keys (``bst_...``) never match.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bastion.files import Stamp, replace_text, stamp

FILE_NAME = "approvers.yaml"
TOKEN_PREFIX = "bap_"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


@dataclass(frozen=True)
class Approver:
    id: str
    name: str


def _hash(secret: str, salt: bytes) -> str:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT).hex()  # type: ignore[arg-type]


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text()) or {}
    entries = data.get("approvers") or [] if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: 'approvers' must be a list")
    return [dict(e) for e in entries]


def add_approver(path: Path, name: str) -> str:
    """Add an approver named ``name``; returns the token (shown once, stored only as a hash)."""
    if not name.strip():
        raise ValueError("An approver needs a non-empty --name.")
    entries = _read(path)
    approver_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(24)
    salt = os.urandom(16)
    entries.append(
        {
            "id": approver_id,
            "name": name,
            "salt": salt.hex(),
            "hash": "scrypt:" + _hash(secret, salt),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    text = "# Approvers of held calls: scrypt hashes of their tokens. Managed by `bastion approvers add`.\n"
    replace_text(path, text + yaml.safe_dump({"approvers": entries}, sort_keys=False))
    return f"{TOKEN_PREFIX}{approver_id}_{secret}"


def list_approvers(path: Path) -> list[Approver]:
    return [Approver(str(e.get("id")), str(e.get("name"))) for e in _read(path)]


class Approvers:
    """Verifies approver tokens against the file, re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: Stamp = None  # a missing file and "never read" both hold no approvers
        self._entries: dict[str, dict[str, Any]] = {}
        self._verified: dict[str, Approver] = {}

    def _reload(self) -> None:
        current = stamp(self.path)
        if current == self._stamp:
            return
        self._stamp = current
        self._entries = {str(e.get("id")): e for e in _read(self.path)}
        self._verified = {}

    def verify(self, token: str) -> Approver | None:
        """The approver whose token this is, or ``None``."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        approver_id, _, secret = token.removeprefix(TOKEN_PREFIX).partition("_")
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            self._reload()
            if (known := self._verified.get(digest)) is not None:
                return known
            entry = self._entries.get(approver_id)
        if entry is None or not secret:
            return None
        stored = str(entry.get("hash", "")).removeprefix("scrypt:")
        try:
            candidate = _hash(secret, bytes.fromhex(str(entry.get("salt", ""))))
        except ValueError:
            return None
        if not hmac.compare_digest(candidate, stored):
            return None
        approver = Approver(approver_id, str(entry.get("name")))
        with self._lock:
            self._verified[digest] = approver
        return approver
