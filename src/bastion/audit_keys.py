"""Ed25519 signatures for the audit trail: each proxy instance signs its chain links and heads.

A proxy's private key lives in its outbox directory (:data:`KEY_FILE`, PKCS#8 PEM, mode 0600),
created on first start; its public key is registered with the collector and exported with the
records, so anyone can check them. What is signed is :func:`message`: the kind of row (record,
head, anchor or key), the instance, the chain position and the hash. A record's hash covers every
field of the record and ``prev_hash`` (:mod:`bastion.audit_chain`), so its signature covers them
too. Keys and signatures travel as lowercase hex (32 and 64 bytes).
"""

from __future__ import annotations

import json
import os
import stat
from functools import lru_cache
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILE: Final = "audit_signing_key.pem"
RECORD: Final = "record"
HEAD: Final = "head"
ANCHOR: Final = "anchor"
KEY: Final = "key"


def message(kind: str, instance: str, seq: int, hash_hex: str) -> bytes:
    """The bytes a signature covers: compact sorted-key JSON of the row's kind and position."""
    body = {"type": kind, "instance": instance, "seq": int(seq), "hash": hash_hex}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class Signer:
    """One instance's private key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_key = raw.hex()

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    def sign(self, kind: str, instance: str, seq: int, hash_hex: str) -> str:
        return self._key.sign(message(kind, instance, seq, hash_hex)).hex()

    def __repr__(self) -> str:
        return f"Signer(public_key={self.public_key!r})"


def valid(public_key: str, signature: str, kind: str, instance: str, seq: int, hash_hex: str) -> bool:
    """Whether ``signature`` is ``public_key``'s over the row; False for anything malformed."""
    try:
        _public(public_key).verify(bytes.fromhex(signature), message(kind, instance, seq, hash_hex))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


@lru_cache(maxsize=256)
def _public(public_key: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))


def load_or_create(directory: Path) -> Signer:
    """The signing key in ``directory``, created (mode 0600) if there is none.

    A key file that others may read is refused: whoever reads it can forge the trail.
    """
    path = directory / KEY_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return _create(path)
    with os.fdopen(fd, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            raise PermissionError(
                f"Audit signing key {path} has mode {mode:o}; others may read it. Run: chmod 600 {path}"
            )
        key = serialization.load_pem_private_key(f.read(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"Audit signing key {path} is not an Ed25519 private key.")
    return Signer(key)


def _create(path: Path) -> Signer:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # whatever the umask
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # never replaces a key another process created meanwhile
    except FileExistsError:
        os.unlink(tmp)
        return load_or_create(path.parent)
    os.unlink(tmp)
    return Signer(key)
