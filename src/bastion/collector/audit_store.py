"""Exactly-once spans and the audit chain table.

Senders re-ship after a crash (the proxy's outbox is at-least-once), so the store deduplicates:

* ``otel_traces`` keeps the OpenTelemetry Collector exporter's schema (plain MergeTree), so a
  batch is filtered *before* insert: rows whose (TraceId, SpanId) is already stored in the
  batch's time windows (a re-shipped span has the same start time; the ids stored in each
  window are listed and compared in Python) or repeated in the batch are dropped. The batcher
  runs one write at a time, so check-then-insert does not race within one collector. Several
  collectors on one ClickHouse server could race; the audit table below is the authoritative,
  deduplicated record.
* ``audit_chain`` (ReplacingMergeTree on instance, type, seq) holds every decision record of the
  hash chain, every chain head and every anchor, with their signatures, copied from the spans'
  ``bastion.audit.*`` attributes. It is also filtered before insert, and merges fold any
  duplicate that slips through.
* ``audit_keys`` holds each proxy instance's public key, when the collector first saw it (no
  TTL: old records stay checkable). A key whose self-signature fails is refused; a second key
  for an instance is stored beside the first, and only the first is trusted.

:meth:`AuditStore.span_problems` matches decision spans to their signed records: the audit view
flags each row with it.

Retention: :meth:`AuditStore.apply_ttl` sets each table's TTL at start-up, only when it differs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any, Final

from bastion import audit_keys, audit_verify, semconv
from bastion.audit_chain import SpanView
from bastion.collector import deploy, schema
from bastion.collector.schema import AUDIT_TABLE, KEYS_TABLE, SpanRow
from bastion.collector.store import Store

log = logging.getLogger(__name__)

WINDOW_GAP_NS: Final = 5 * 10**9
WINDOW_SPAN_NS: Final = 60 * 10**9
RECORD: Final = audit_keys.RECORD
HEAD: Final = audit_keys.HEAD
ANCHOR: Final = audit_keys.ANCHOR

# Table column <-> canonical record field.
COLUMNS: Final = (
    ("Instance", "instance"),
    ("Type", "type"),
    ("Seq", "seq"),
    ("Timestamp", "timestamp"),
    ("TraceId", "trace_id"),
    ("SpanId", "span_id"),
    ("Agent", "agent"),
    ("Decision", "decision"),
    ("Rule", "rule"),
    ("PolicyVersion", "policy_version"),
    ("Kind", "kind"),
    ("Target", "target"),
    ("PrevHash", "prev_hash"),
    ("Hash", "hash"),
    ("ViewHash", "view_hash"),
    ("Signature", "signature"),
)
KEY_COLUMNS: Final = ("Instance", "PublicKey", "Signature", "FirstSeen")
_SELECT: Final = ", ".join(f"toUnixTimestamp64Nano({c})" if c == "Timestamp" else c for c, _ in COLUMNS)

_EXISTING_SPANS: Final = """\
SELECT TraceId, SpanId FROM {db:Identifier}.{table:Identifier}
WHERE Timestamp >= fromUnixTimestamp64Nano({lo:Int64}) AND Timestamp <= fromUnixTimestamp64Nano({hi:Int64})"""

_EXISTING_AUDIT: Final = """\
SELECT Instance, Type, Seq, Hash FROM {db:Identifier}.{audit:Identifier}
WHERE Instance IN {instances:Array(String)} AND Seq >= {lo:UInt64} AND Seq <= {hi:UInt64}"""

_PAGE: Final = f"""\
SELECT {_SELECT} FROM {{db:Identifier}}.{{audit:Identifier}}
WHERE (Instance, Type, Seq, Hash) > ({{ai:String}}, {{at:String}}, {{aseq:UInt64}}, {{ah:String}})
    AND Type = {{type:String}}
    AND Timestamp >= fromUnixTimestamp64Nano({{since:Int64}}) AND Timestamp <= fromUnixTimestamp64Nano({{until:Int64}})
ORDER BY Instance, Type, Seq, Hash
LIMIT {{limit:UInt32}}"""

_LINKS: Final = f"""\
SELECT {_SELECT} FROM {{db:Identifier}}.{{audit:Identifier}}
WHERE Type = 'record' AND SpanId IN {{span_ids:Array(String)}}
    AND Timestamp >= fromUnixTimestamp64Nano({{lo:Int64}}) AND Timestamp <= fromUnixTimestamp64Nano({{hi:Int64}})"""

_KEYS_SELECT: Final = """\
SELECT Instance, PublicKey, any(Signature), toUnixTimestamp64Nano(min(FirstSeen)) AS first
FROM {db:Identifier}.{keys:Identifier}
GROUP BY Instance, PublicKey
ORDER BY Instance, first, PublicKey"""

_DECISION_SPANS: Final = """\
SELECT toUnixTimestamp64Nano(Timestamp), TraceId, SpanId, SpanName, ServiceName, Duration, StatusCode, SpanAttributes
FROM {db:Identifier}.{table:Identifier}
WHERE mapContains(SpanAttributes, {decision_key:String})
    AND (Timestamp, TraceId, SpanId) > (fromUnixTimestamp64Nano({at:Int64}), {atrace:String}, {aspan:String})
    AND Timestamp >= fromUnixTimestamp64Nano({since:Int64}) AND Timestamp <= fromUnixTimestamp64Nano({until:Int64})
ORDER BY Timestamp, TraceId, SpanId
LIMIT {limit:UInt32}"""

_SPAN_STATS: Final = """\
SELECT sum(n), count(), arraySlice(groupArrayIf(id, n > 1), 1, 100)
FROM (
    SELECT concat(TraceId, ':', SpanId) AS id, count() AS n
    FROM {db:Identifier}.{table:Identifier}
    WHERE ServiceName = {service:String} OR {service:String} = ''
    GROUP BY id
)"""


def windows(timestamps: Sequence[int], gap: int = WINDOW_GAP_NS, span: int = WINDOW_SPAN_NS) -> list[tuple[int, int]]:
    """Sorted ``timestamps`` cut into tight [lo, hi] ranges: at most ``span`` wide, no ``gap`` inside.

    A re-shipped backlog next to fresh spans becomes two small scans, not one wide one.
    """
    out: list[tuple[int, int]] = []
    for ts in timestamps:
        if out and ts - out[-1][1] <= gap and ts - out[-1][0] <= span:
            out[-1] = (out[-1][0], ts)
        else:
            out.append((ts, ts))
    return out


def audit_rows(rows: Sequence[SpanRow]) -> list[dict[str, Any]]:
    """The chain records, chain heads and anchors that ``rows`` carry."""
    out: list[dict[str, Any]] = []
    marks = ((semconv.BASTION_AUDIT_HEAD, HEAD), (semconv.BASTION_AUDIT_ANCHOR, ANCHOR))
    for row in rows:
        attrs = row.span_attributes
        try:
            if semconv.BASTION_AUDIT_RECORD in attrs:
                record = json.loads(attrs[semconv.BASTION_AUDIT_RECORD])
                out.append({**{f: record.get(f, "") for _, f in COLUMNS}, "type": RECORD})
            for attribute, kind in marks:
                if attribute in attrs:
                    mark = json.loads(attrs[attribute])
                    blank = {f: "" for _, f in COLUMNS}
                    fields = {f: mark[f] for f in ("instance", "seq", "hash", "signature") if f in mark}
                    out.append({**blank, **fields, "type": kind, "timestamp": row.timestamp})
        except (ValueError, TypeError, AttributeError) as e:
            log.warning("Span %s carries an unreadable audit record: %s", row.span_id, e)
    for r in out:
        r["seq"] = int(r["seq"] or 0)
        r["timestamp"] = int(r["timestamp"] or 0)
    return out


def key_rows(rows: Sequence[SpanRow]) -> list[dict[str, str]]:
    """The public keys ``rows`` register, each signed by itself (others are refused)."""
    out = []
    for row in rows:
        text = row.span_attributes.get(semconv.BASTION_AUDIT_KEY)
        if text is None:
            continue
        try:
            key = json.loads(text)
            instance, public_key, signature = str(key["instance"]), str(key["public_key"]), str(key["signature"])
        except (ValueError, TypeError, KeyError) as e:
            log.warning("Span %s carries an unreadable audit key: %s", row.span_id, e)
            continue
        if not audit_keys.valid(public_key, signature, audit_keys.KEY, instance, 0, public_key):
            log.warning("Refused the audit key of instance %s: its self-signature is not valid", instance)
            continue
        out.append({"instance": instance, "public_key": public_key, "signature": signature})
    return out


class AuditStore:
    """Deduplicating writes and audit-chain reads over a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.dropped = 0
        """Rows not written because they were already stored (re-shipped)."""
        self._names = {"db": store.database, "table": store.table, "audit": AUDIT_TABLE, "keys": KEYS_TABLE}

    def migrate(self, cluster: str | None = None) -> None:
        """Create the audit table (embedded or server), or every table of a cluster."""
        if cluster:
            for statement in deploy.statements(self.store.database, cluster):
                self.store.command(statement, {})
            for table in (deploy.local_table(AUDIT_TABLE, cluster), AUDIT_TABLE):
                self.store.command(schema.audit_upgrade(self.store.database, table, cluster), {})
        else:
            self.store.command(schema.audit_ddl(self.store.database), {})
            self.store.command(schema.audit_upgrade(self.store.database), {})
            self.store.command(schema.keys_ddl(self.store.database), {})

    def insert_spans(self, rows: Sequence[SpanRow]) -> None:
        """Write ``rows``, their audit records and keys, skipping what is already stored."""
        records = self._fresh_audit(audit_rows(rows))
        if records:
            self.store.insert_rows(AUDIT_TABLE, [[r[f] for _, f in COLUMNS] for r in records], [c for c, _ in COLUMNS])
        self._insert_keys(key_rows(rows))
        fresh = self._fresh_spans(rows)
        self.dropped += len(rows) - len(fresh)
        self.store.insert_spans(fresh)

    def _fresh_spans(self, rows: Sequence[SpanRow]) -> list[SpanRow]:
        seen: set[tuple[str, str]] = set()
        unique: list[SpanRow] = []
        for row in rows:
            key = (row.trace_id, row.span_id)
            if row.span_id and key in seen:
                continue
            seen.add(key)
            unique.append(row)
        stored: set[tuple[str, str]] = set()
        for lo, hi in windows(sorted(r.timestamp for r in unique if r.span_id)):
            # Listing every id in the window is cheaper than filtering by 10k ids in the SQL.
            params = {**self._names, "lo": lo, "hi": hi}
            stored.update((str(t), str(s)) for t, s in self.store.rows(_EXISTING_SPANS, params))
        return [r for r in unique if not r.span_id or (r.trace_id, r.span_id) not in stored]

    def _fresh_audit(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not records:
            return []
        params = {
            **self._names,
            "instances": sorted({str(r["instance"]) for r in records}),
            "lo": min(r["seq"] for r in records),
            "hi": max(r["seq"] for r in records),
        }
        stored = {(str(i), str(t), int(s), str(h)) for i, t, s, h in self.store.rows(_EXISTING_AUDIT, params)}
        out = []
        for r in records:
            key = (str(r["instance"]), str(r["type"]), int(r["seq"]), str(r["hash"]))
            if key not in stored:
                stored.add(key)
                out.append(r)
        return out

    def _insert_keys(self, keys: list[dict[str, str]]) -> None:
        stored = {(k["instance"], k["public_key"]) for k in self.keys()} if keys else set()
        fresh = []
        for k in keys:
            if (k["instance"], k["public_key"]) not in stored:
                stored.add((k["instance"], k["public_key"]))
                fresh.append([k["instance"], k["public_key"], k["signature"], time.time_ns()])
                if any(i == k["instance"] and p != k["public_key"] for i, p in stored):
                    log.warning("Instance %s registered a second audit key; only its first is trusted", k["instance"])
        if fresh:
            self.store.insert_rows(KEYS_TABLE, fresh, list(KEY_COLUMNS))

    def keys(self) -> list[dict[str, Any]]:
        """Every registered public key, by instance, the first seen first."""
        rows = self.store.rows(_KEYS_SELECT, self._names)
        return [
            {"instance": str(i), "public_key": str(k), "signature": str(s), "first_seen": int(t)} for i, k, s, t in rows
        ]

    def span_problems(self, spans: Sequence[SpanView]) -> list[str | None]:
        """For each decision span, None if it matches its signed record, else why not."""
        if not spans:
            return []
        params = {
            **self._names,
            "span_ids": sorted({s.span_id for s in spans}),
            "lo": min(s.timestamp for s in spans),
            "hi": max(s.timestamp for s in spans),
        }
        links: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in self.store.rows(_LINKS, params):
            record = {f: value for (_, f), value in zip(COLUMNS, row, strict=True)}
            links.setdefault((record["trace_id"], record["span_id"]), []).append(record)
        keys: dict[str, list[str]] = {}
        for k in self.keys():
            keys.setdefault(k["instance"], []).append(k["public_key"])
        return [audit_verify.span_problem(s, links.get((s.trace_id, s.span_id), []), keys) for s in spans]

    def decision_spans(self, *, since: int, until: int, after: tuple[int, str, str], limit: int) -> list[SpanView]:
        """Spans that carry a decision (the rows of the audit view), oldest first, after the key ``after``."""
        params = {
            **self._names,
            "decision_key": semconv.BASTION_DECISION,
            "since": since,
            "until": until,
            "at": after[0],
            "atrace": after[1],
            "aspan": after[2],
            "limit": limit,
        }
        return [SpanView(*row) for row in self.store.rows(_DECISION_SPANS, params)]

    def page(
        self, *, type: str, since: int, until: int, after: tuple[str, str, int, str], limit: int
    ) -> list[dict[str, Any]]:
        """Records (or heads) in chain order after the key ``after``, at most ``limit``."""
        params = {
            **self._names,
            "type": type,
            "since": since,
            "until": until,
            "ai": after[0],
            "at": after[1],
            "aseq": after[2],
            "ah": after[3],
            "limit": limit,
        }
        rows = self.store.rows(_PAGE, params)
        return [{f: value for (_, f), value in zip(COLUMNS, row, strict=True)} for row in rows]

    def span_stats(self, service: str = "") -> dict[str, Any]:
        """How many spans are stored, how many distinct (TraceId, SpanId), and which repeat."""
        ((total, distinct, repeated),) = self.store.rows(_SPAN_STATS, {**self._names, "service": service})
        return {"spans": int(total), "distinct": int(distinct), "duplicates": list(repeated)}

    def apply_ttl(self, traces_days: int, audit_days: int, cluster: str | None = None) -> None:
        """Set each table's TTL if it is not already the configured one (idempotent)."""
        table = self.store.table
        for name, column, days in (
            (table, "Timestamp", traces_days),
            (f"{table}_trace_id_ts", "Start", traces_days),
            (AUDIT_TABLE, "Timestamp", audit_days),
        ):
            self._ttl(deploy.local_table(name, cluster), column, days, cluster)

    def _ttl(self, table: str, column: str, days: int, cluster: str | None) -> None:
        rows = self.store.rows(
            "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {name:String}",
            {"db": self.store.database, "name": table},
        )
        if not rows:
            return
        current = str(rows[0][0])
        expression = f"toDateTime({column}) + toIntervalDay({days})"
        on_cluster = f" ON CLUSTER {schema.identifier(cluster)}" if cluster else ""
        target = f"{schema.identifier(self.store.database)}.{schema.identifier(table)}{on_cluster}"
        if days > 0 and f"TTL {expression}" not in current:
            log.info("Setting the TTL of %s to %d days", table, days)
            self.store.command(f"ALTER TABLE {target} MODIFY TTL {expression}", {})
        elif days <= 0 and " TTL " in current:
            log.info("Removing the TTL of %s", table)
            self.store.command(f"ALTER TABLE {target} REMOVE TTL", {})


def open_audit(store: Store, *, traces_ttl_days: int, audit_ttl_days: int, cluster: str = "") -> AuditStore:
    """Create the audit table (or the cluster's tables) and apply the configured TTLs."""
    audit = AuditStore(store)
    audit.migrate(cluster or None)
    audit.apply_ttl(traces_ttl_days, audit_ttl_days, cluster or None)
    return audit
