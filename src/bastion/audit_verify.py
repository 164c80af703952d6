"""Checking the audit trail: signed links, unbroken chains, and decision spans that match them.

:func:`verify` walks each instance's chain in seq order and reports its first broken link by its
true position: a record is authentic only if its content matches its hash and the instance's key
signed that hash, so a forged record at a real position is itself the break. A chain begins at
seq 1, or, in a store that was started after the chain had advanced, right after the lowest signed
**anchor** (the position the previous store had acknowledged when the proxy restarted); after
that every seq must be there. Signed heads and anchors say how far a chain reached: a shorter
chain lost its tail.

:func:`span_problem` tells whether a decision span (what the audit view shows) matches an
authentic record; the collector flags each ``/api/audit`` row with it, ``verify`` checks them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bastion import audit_keys
from bastion.audit_chain import FIELDS, GENESIS, OPTIONAL_FIELDS, SpanView, record_hash, span_fields

Keys = Mapping[str, Sequence[str]]
"""Each instance's registered public keys, the first seen first: only the first is trusted."""


@dataclass(frozen=True)
class Break:
    """A broken link of one instance's chain (``seq`` None: the instance as a whole); ``kind`` says
    whether the record at ``seq`` or a chain head or anchor there is broken."""

    instance: str
    seq: int | None
    problem: str
    kind: str = audit_keys.RECORD

    def __str__(self) -> str:
        where = "" if self.seq is None else f"{self.kind} seq {self.seq}: "
        return f"instance {self.instance}: {where}{self.problem}"


@dataclass(frozen=True)
class Report:
    instances: int
    records: int
    breaks: list[Break]
    anchored: dict[str, int] = field(default_factory=dict)
    """Instances whose chain begins in this store at a signed anchor: the anchor's seq."""

    @property
    def intact(self) -> bool:
        return not self.breaks


def link_problem(record: Mapping[str, Any], public_key: str | None, kind: str = audit_keys.RECORD) -> str | None:
    """Why ``record`` (or a head or anchor) is not authentic, or None."""
    if kind == audit_keys.RECORD and record_hash(record) != record["hash"]:
        return "its content does not match its hash (edited?)"
    if not record.get("signature"):
        return "it is not signed"
    if public_key is None:
        return "no public key is registered for its instance"
    args = (str(record["instance"]), int(record["seq"]), str(record["hash"]))
    if not audit_keys.valid(public_key, str(record["signature"]), kind, *args):
        return "its signature is not valid (forged, or re-hashed after an edit?)"
    return None


def span_problem(span: SpanView, records: Iterable[Mapping[str, Any]], keys: Keys) -> str | None:
    """None if an authentic record is the link of ``span`` and matches what the view shows; else why not."""
    problems = []
    shown = span_fields(span)
    for record in records:
        if (record["trace_id"], record["span_id"]) != (span.trace_id, span.span_id):
            continue
        instance_keys = keys.get(str(record["instance"]))
        problem = link_problem(record, instance_keys[0] if instance_keys else None)
        if problem is None:
            differ = [f for f in (*FIELDS, *OPTIONAL_FIELDS) if f in shown and str(shown[f]) != str(record.get(f, ""))]
            if not differ:
                return None
            problem = "the span differs from its signed record in " + ", ".join(
                "what the view shows (attributes, status or duration)" if f == "view_hash" else f for f in differ
            )
        problems.append(f"record seq {record['seq']} of instance {record['instance']}: {problem}")
    return "; ".join(problems) or "no signed audit record links this decision"


def registered_keys(rows: Iterable[Mapping[str, Any]]) -> tuple[dict[str, list[str]], list[Break]]:
    """Public keys by instance, in the order given (first seen first); a key whose self-signature
    fails is left out and reported."""
    keys: dict[str, list[str]] = {}
    bad: list[Break] = []
    for row in rows:
        instance, public_key = str(row["instance"]), str(row["public_key"])
        if audit_keys.valid(public_key, str(row.get("signature", "")), audit_keys.KEY, instance, 0, public_key):
            if public_key not in keys.setdefault(instance, []):
                keys[instance].append(public_key)
        else:
            bad.append(Break(instance, None, f"public key {public_key[:16]}… is not signed by itself (forged?)"))
    return keys, bad


def pin(keys: Keys, trusted: Mapping[str, str]) -> tuple[dict[str, list[str]], list[Break]]:
    """Use only ``trusted`` keys (from an earlier export): report instances whose first registered
    key is another, and instances nobody trusted."""
    pinned: dict[str, list[str]] = {}
    problems = []
    for instance in sorted(set(keys) | set(trusted)):
        if instance not in trusted:
            problems.append(Break(instance, None, "its public key is not among the trusted keys"))
            continue
        pinned[instance] = [trusted[instance]]
        registered = list(keys.get(instance, ()))
        if registered and registered[0] != trusted[instance]:
            problems.append(Break(instance, None, "the collector's public key for it is not the trusted one"))
    return pinned, problems


def verify(
    records: Iterable[Mapping[str, Any]],
    heads: Iterable[Mapping[str, Any]] = (),
    *,
    keys: Keys,
    anchors: Iterable[Mapping[str, Any]] = (),
    from_start: bool = True,
) -> Report:
    """Check every instance's chain; report its key problems and its first broken link.

    ``records`` may come in any order. With ``from_start`` the chain must begin at seq 1 after
    :data:`GENESIS` or after its lowest signed anchor; without it (a ``--since`` window) its first
    record is taken as the anchor. ``heads`` and ``anchors`` are ``instance``, ``seq``, ``hash``
    and ``signature``.
    """
    chains: dict[str, dict[int, list[Mapping[str, Any]]]] = {}
    count = 0
    for r in records:
        chains.setdefault(str(r["instance"]), {}).setdefault(int(r["seq"]), []).append(r)
        count += 1
    marks: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for kind, rows in ((audit_keys.HEAD, heads), (audit_keys.ANCHOR, anchors)):
        for row in rows:
            marks.setdefault(str(row["instance"]), []).append((kind, row))
    breaks: list[Break] = []
    anchored: dict[str, int] = {}
    for instance in sorted(set(chains) | set(marks)):
        registered = list(dict.fromkeys(keys.get(instance, ())))
        if not registered:
            breaks.append(Break(instance, None, "no public key is registered: its records cannot be authenticated"))
            continue
        if len(registered) > 1:
            breaks.append(
                Break(
                    instance,
                    None,
                    f"{len(registered)} different public keys are registered for it (a key was replaced?); "
                    f"only the first, {registered[0][:16]}…, is trusted",
                )
            )
        chain = _Chain(instance, chains.get(instance, {}), marks.get(instance, []), registered[0])
        first = chain.first_break(from_start)
        if first is not None:
            breaks.append(first)
        if chain.anchor is not None:
            anchored[instance] = int(chain.anchor["seq"])
    return Report(instances=len(chains), records=count, breaks=breaks, anchored=anchored)


class _Chain:
    def __init__(
        self,
        instance: str,
        records: dict[int, list[Mapping[str, Any]]],
        marks: list[tuple[str, Mapping[str, Any]]],
        key: str,
    ) -> None:
        self.instance = instance
        self.records = records
        self.key = key
        self.forged: list[Break] = []
        self.heads: list[Mapping[str, Any]] = []
        self.anchors: list[Mapping[str, Any]] = []
        for kind, mark in marks:
            problem = link_problem(mark, key, kind)
            if problem is not None:
                self.forged.append(Break(instance, int(mark["seq"]), problem, kind))
            else:
                (self.heads if kind == audit_keys.HEAD else self.anchors).append(mark)
        self.anchor: Mapping[str, Any] | None = None

    def first_break(self, from_start: bool) -> Break | None:
        """The lowest-seq problem: a broken link, a lost tail, or a forged head or anchor (the
        record's own problem first at the same seq)."""
        walked = self._walk(from_start)
        problems = [walked] if isinstance(walked, Break) else self._tail(walked)
        problems += self.forged
        return min(problems, key=lambda b: b.seq or 0) if problems else None

    def _start(self, from_start: bool) -> tuple[int, str | None]:
        seqs = sorted(self.records)
        if not from_start:
            return (seqs[0] if seqs else 1), None
        lowest = min(self.anchors, key=lambda a: int(a["seq"]), default=None)
        if lowest is None or (seqs and seqs[0] <= int(lowest["seq"])):
            return 1, GENESIS
        self.anchor = lowest
        return int(lowest["seq"]) + 1, str(lowest["hash"])

    def _walk(self, from_start: bool) -> Break | int:
        """The first broken link, or the last seq of an unbroken chain."""
        expected, prev_hash = self._start(from_start)
        for seq in sorted(self.records):
            if seq != expected:
                return self._break(expected, f"missing (deleted?): the next stored record is seq {seq}")
            candidates = self.records[seq]
            for record in candidates:
                problem = link_problem(record, self.key)
                if problem is not None:
                    if len(candidates) > 1:
                        problem = f"{len(candidates)} different records claim this position (inserted?); one: {problem}"
                    return self._break(seq, problem)
            if len({str(r["hash"]) for r in candidates}) > 1:
                return self._break(seq, f"{len(candidates)} different signed records claim this position")
            record = candidates[0]
            if prev_hash is not None and record["prev_hash"] != prev_hash:
                return self._break(seq, "it does not follow the record before it (inserted, deleted or reordered?)")
            prev_hash = str(record["hash"])
            expected = seq + 1
        return expected - 1

    def _tail(self, last: int) -> list[Break]:
        out = []
        for mark in (*self.heads, *self.anchors):
            seq, stored = int(mark["seq"]), self.records.get(int(mark["seq"]))
            if stored and stored[0]["hash"] != mark["hash"]:
                out.append(self._break(seq, "it differs from the chain head recorded for it"))
        reach = max((int(m["seq"]) for m in (*self.heads, *self.anchors)), default=0)
        if reach > last:
            problem = f"missing: a signed chain head says the chain reaches seq {reach} (truncated?)"
            out.append(self._break(last + 1, problem))
        if self.anchor is not None:
            begin = int(self.anchor["seq"])
            for head in self.heads:
                if int(head["seq"]) < begin:
                    out.append(
                        self._break(
                            int(head["seq"]),
                            f"missing: a signed head shows this store held it, but the chain here begins after "
                            f"the anchor at seq {begin} (deleted?)",
                        )
                    )
        return out

    def _break(self, seq: int, problem: str) -> Break:
        return Break(self.instance, seq, problem)
