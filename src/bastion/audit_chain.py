"""The audit trail's hash chain: canonical records, their hashes, and verification.

Each proxy instance chains its decision records: record ``n`` carries ``prev_hash``, the hash of
record ``n - 1`` (:data:`GENESIS` for the first), and its own ``hash``, the SHA-256 of its
canonical serialization (sorted-key compact JSON of every field but ``hash``). Editing, deleting,
inserting or reordering a stored record breaks a link; periodic chain heads (instance, last seq,
last hash) make a truncated tail visible too.

Pure functions over plain dicts: the proxy builds records with them, the collector stores them
as columns, and ``bastion audit verify`` recomputes them from what the collector returns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

GENESIS: Final = "0" * 64

# The fields of a decision record, every one hashed. ``seq`` and ``timestamp`` are integers
# (``timestamp`` in Unix nanoseconds); the others are strings, "" when absent.
FIELDS: Final = (
    "instance",
    "seq",
    "timestamp",
    "trace_id",
    "span_id",
    "agent",
    "decision",
    "rule",
    "policy_version",
    "kind",
    "target",
    "prev_hash",
)
INT_FIELDS: Final = frozenset({"seq", "timestamp"})


def canonical(record: Mapping[str, Any]) -> str:
    """The record's fields (not its hash) as sorted-key compact JSON: the bytes that are hashed."""
    values = {f: int(record[f]) if f in INT_FIELDS else str(record[f]) for f in FIELDS}
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(record).encode()).hexdigest()


def seal(fields: Mapping[str, Any], *, instance: str, seq: int, prev_hash: str) -> dict[str, Any]:
    """A complete chained record: ``fields`` plus chain position and ``hash``."""
    record: dict[str, Any] = {f: fields.get(f, 0 if f in INT_FIELDS else "") for f in FIELDS}
    record.update(instance=instance, seq=seq, prev_hash=prev_hash)
    record["hash"] = record_hash(record)
    return record


@dataclass(frozen=True)
class Break:
    """The first broken link of one instance's chain."""

    instance: str
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"instance {self.instance}: record seq {self.seq}: {self.problem}"


@dataclass(frozen=True)
class Report:
    instances: int
    records: int
    breaks: list[Break]

    @property
    def intact(self) -> bool:
        return not self.breaks


def verify(
    records: Iterable[Mapping[str, Any]],
    heads: Iterable[Mapping[str, Any]] = (),
    *,
    from_start: bool = True,
) -> Report:
    """Check every instance's chain; report the first broken link of each.

    ``records`` may come in any order. With ``from_start`` the chain must begin at seq 1 after
    :data:`GENESIS`; without it (a ``--since`` window) its first record is taken as the anchor.
    ``heads`` are chain heads (``instance``, ``seq``, ``hash``): a chain that ends before its
    newest head, or disagrees with it, has lost its tail.
    """
    by_instance: dict[str, dict[int, list[Mapping[str, Any]]]] = {}
    count = 0
    for r in records:
        by_instance.setdefault(str(r["instance"]), {}).setdefault(int(r["seq"]), []).append(r)
        count += 1
    newest: dict[str, Mapping[str, Any]] = {}
    for h in heads:
        key = str(h["instance"])
        if key not in newest or int(h["seq"]) > int(newest[key]["seq"]):
            newest[key] = h
    breaks = []
    for instance in sorted(set(by_instance) | set(newest)):
        problem = _first_break(instance, by_instance.get(instance, {}), newest.get(instance), from_start)
        if problem is not None:
            breaks.append(problem)
    return Report(instances=len(by_instance), records=count, breaks=breaks)


def _first_break(
    instance: str, chain: dict[int, list[Mapping[str, Any]]], head: Mapping[str, Any] | None, from_start: bool
) -> Break | None:
    seqs = sorted(chain)
    expected_seq = 1 if from_start or not seqs else seqs[0]
    prev_hash: str | None = GENESIS if from_start else None
    for seq in seqs:
        if seq != expected_seq:
            return Break(instance, expected_seq, f"missing (deleted?): the next stored record is seq {seq}")
        distinct = {record_hash(r) + str(r["hash"]) for r in chain[seq]}
        if len(distinct) > 1:
            return Break(instance, seq, f"{len(chain[seq])} different records claim this position (inserted?)")
        record = chain[seq][0]
        if record_hash(record) != record["hash"]:
            return Break(instance, seq, "its content does not match its hash (edited?)")
        if prev_hash is not None and record["prev_hash"] != prev_hash:
            return Break(instance, seq, "it does not follow the record before it (inserted, deleted or reordered?)")
        prev_hash = str(record["hash"])
        expected_seq = seq + 1
    if head is not None:
        last = expected_seq - 1
        head_seq = int(head["seq"])
        if head_seq > last:
            return Break(
                instance, last + 1, f"missing: a chain head says the chain reaches seq {head_seq} (truncated?)"
            )
        if head_seq >= 1 and head_seq in chain and chain[head_seq][0]["hash"] != head["hash"]:
            return Break(instance, head_seq, "it differs from the chain head recorded for it")
    return None
