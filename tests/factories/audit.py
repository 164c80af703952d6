"""Factories for audit trail tests: signed chains, heads, anchors and keys of one instance."""

from __future__ import annotations

from typing import Any

from bastion import audit_keys
from bastion.audit_chain import GENESIS, seal
from bastion.audit_keys import Signer

SIGNER = Signer.generate()
KEYS = {"i1": [SIGNER.public_key], "i2": [SIGNER.public_key]}


def chain(
    n: int, instance: str = "i1", signer: Signer = SIGNER, start: int = 1, prev: str = GENESIS
) -> list[dict[str, Any]]:
    """Records ``start`` to ``start + n - 1``, signed and linked."""
    out: list[dict[str, Any]] = []
    for seq in range(start, start + n):
        fields = {"timestamp": 1_000 + seq, "agent": "a", "decision": "allow", "rule": "r", "target": "m"}
        record = seal(fields, instance=instance, seq=seq, prev_hash=prev, signer=signer)
        out.append(record)
        prev = record["hash"]
    return out


def mark(kind: str, record: dict[str, Any], signer: Signer = SIGNER) -> dict[str, Any]:
    """A signed head or anchor at ``record``'s position."""
    instance, seq, hash_hex = record["instance"], record["seq"], record["hash"]
    return {"instance": instance, "seq": seq, "hash": hash_hex, "signature": signer.sign(kind, instance, seq, hash_hex)}


def head(record: dict[str, Any], signer: Signer = SIGNER) -> dict[str, Any]:
    return mark(audit_keys.HEAD, record, signer)


def anchor(record: dict[str, Any], signer: Signer = SIGNER) -> dict[str, Any]:
    return mark(audit_keys.ANCHOR, record, signer)


def key_row(instance: str = "i1", signer: Signer = SIGNER) -> dict[str, Any]:
    public = signer.public_key
    return {"instance": instance, "public_key": public, "signature": signer.sign(audit_keys.KEY, instance, 0, public)}
