"""Held calls' arguments in clear, kept sealed: approvers must see the values they approve, while the
store never keeps personal data in clear.

A proxy sends a held call's arguments twice: redacted (as everything stored for audit) and in
clear. The collector seals the clear form with a key only it holds (Fernet: AES-128-CBC with
HMAC-SHA256, from ``cryptography``), stores only the sealed form, opens it only for an approver's
read, and drops it once the call is decided or closed. The key file is created on first start,
mode 0600; collectors that share a store must share it (``--approvals-key-file``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def open(cls, path: Path) -> Sealer:
        """The key at ``path``, created (mode 0600) when missing."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another collector created it meanwhile
                return cls(path.read_bytes().strip())
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def seal(self, value: Any) -> str:
        return self._fernet.encrypt(json.dumps(value, default=str).encode()).decode()

    def unseal(self, token: str) -> Any:
        """The sealed value; ``None`` when the token is not ours (a different key, or tampered)."""
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except (InvalidToken, ValueError):
            return None
