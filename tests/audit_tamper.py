"""Tamper with a stopped collector's audit trail, as an attacker with store access would.

Run as ``python audit_tamper.py DATA_DIR KIND SEQ`` (one chDB data path per process, so a child
process). KIND is one of :data:`KINDS`; SEQ is the first record touched. The attacker knows the
hash algorithm (it is public) but not a proxy's private key; it can make its own key (resign).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from bastion.audit_chain import record_hash

TABLE = "bastion.audit_chain"
KEYS = "bastion.audit_keys"
SPANS = "bastion.otel_traces"
RECORDS = f"{TABLE} WHERE Type = 'record'"
SYNC = "SETTINGS mutations_sync = 2"
# column -> record field, for recomputing hashes (ViewHash only where the table has it)
FIELDS = {
    "Instance": "instance",
    "Seq": "seq",
    "TraceId": "trace_id",
    "SpanId": "span_id",
    "Agent": "agent",
    "Decision": "decision",
    "Rule": "rule",
    "PolicyVersion": "policy_version",
    "Kind": "kind",
    "Target": "target",
    "PrevHash": "prev_hash",
    "ViewHash": "view_hash",
}


def records(client: Client, lo: int, hi: int) -> list[dict[str, Any]]:
    result = client.query(
        f"SELECT *, toUnixTimestamp64Nano(Timestamp) AS Ns FROM {RECORDS} AND Seq >= {lo} AND Seq <= {hi} ORDER BY Seq"
    )
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def as_record(row: dict[str, Any]) -> dict[str, Any]:
    return {**{f: row[c] for c, f in FIELDS.items() if c in row}, "timestamp": row["Ns"]}


def replace(client: Client, kind: str, seq: int, changes: dict[str, str], old: tuple[str, str]) -> None:
    """Rewrite the one stored row at a position (every other column, the nanosecond time too, kept);
    ``old`` is a (column, value) that tells the old row from the new one."""
    where = f"WHERE Type = '{kind}' AND Seq = {seq}"  # not on a replaced column: REPLACE's alias would shadow it
    values = ", ".join(f"'{v}' AS {c}" for c, v in changes.items())
    client.command(f"INSERT INTO {TABLE} SELECT * REPLACE ({values}) FROM {TABLE} {where}")
    client.command(f"ALTER TABLE {TABLE} DELETE {where} AND {old[0]} = '{old[1]}' {SYNC}")


def show_decision(client: Client, span_id: str, decision: str) -> None:
    """Change what the audit view shows of one decision span."""
    client.command(
        f"ALTER TABLE {SPANS} UPDATE SpanAttributes = mapUpdate(SpanAttributes, map('bastion.decision', "
        f"'{decision}')) WHERE SpanId = '{span_id}' {SYNC}"
    )


def rehash(client: Client, seq: int, view: bool = False) -> None:
    """Record ``seq`` and its span say deny; every later hash, link and head is recomputed to match
    (with ``view``, the record's view hash too)."""
    rows = records(client, seq - 1, 2**62)
    prev, new = rows[0]["Hash"], {}
    for row in rows[1:]:
        record = {**as_record(row), "prev_hash": prev}
        changes = {"PrevHash": prev}
        if row["Seq"] == seq:
            record["decision"] = changes["Decision"] = "deny"
            show_decision(client, row["SpanId"], "deny")
            if view:
                record["view_hash"] = changes["ViewHash"] = view_hash_of(client, row["SpanId"])
        prev = changes["Hash"] = record_hash(record)
        new[row["Seq"]] = prev
        replace(client, "record", row["Seq"], changes, ("Hash", row["Hash"]))
    marks = client.query(f"SELECT Type, Seq, Hash FROM {TABLE} WHERE Type IN ('head', 'anchor') AND Seq >= {seq}")
    for kind, mark_seq, old in marks.result_rows:
        replace(client, kind, mark_seq, {"Hash": new[mark_seq]}, ("Hash", old))


def view_hash_of(client: Client, span_id: str) -> str:
    from bastion.audit_chain import SpanView, view_hash

    ((row),) = client.query(
        "SELECT toUnixTimestamp64Nano(Timestamp), TraceId, SpanId, SpanName, ServiceName, Duration, StatusCode, "
        f"SpanAttributes FROM {SPANS} WHERE SpanId = '{span_id}'"
    ).result_rows
    return view_hash(SpanView(*row))


def forge(client: Client, seq: int) -> None:
    """The genuine record ``seq`` replaced by a forgery that links to the record before it."""
    (row,) = records(client, seq, seq)
    record = {**as_record(row), "rule": "forged-rule"}
    replace(client, "record", seq, {"Rule": "forged-rule", "Hash": record_hash(record)}, ("Hash", row["Hash"]))


def resign(client: Client, seq: int) -> None:
    """:func:`rehash`, then the attacker's own key replaces the proxy's and signs every row again."""
    from bastion.audit_keys import KEY, Signer

    rehash(client, seq, view=True)
    signer = Signer.generate()
    rows = client.query(f"SELECT Type, Instance, Seq, Hash, Signature FROM {TABLE}").result_rows
    for kind, instance, row_seq, hash_hex, signature in rows:
        changes = {"Signature": signer.sign(kind, instance, row_seq, hash_hex)}
        replace(client, kind, row_seq, changes, ("Signature", signature))
    (instance,) = {row[1] for row in rows}
    client.command(f"TRUNCATE TABLE {KEYS}")
    public = signer.public_key
    client.insert(
        "audit_keys",
        [[instance, public, signer.sign(KEY, instance, 0, public), datetime.now(UTC)]],
        column_names=["Instance", "PublicKey", "Signature", "FirstSeen"],
        database="bastion",
    )


def main(data_dir: str, kind: str, seq: int) -> None:
    client = clickhouse_connect.get_client(dsn=f"chdb://{data_dir}")
    try:
        if kind == "edit":
            client.command(f"ALTER TABLE {TABLE} UPDATE Decision = 'deny' WHERE Type = 'record' AND Seq = {seq} {SYNC}")
        elif kind == "delete":
            client.command(f"ALTER TABLE {TABLE} DELETE WHERE Type = 'record' AND Seq = {seq} {SYNC}")
        elif kind == "truncate":
            client.command(f"ALTER TABLE {TABLE} DELETE WHERE Type = 'record' AND Seq >= {seq} {SYNC}")
        elif kind == "insert":
            client.command(
                f"INSERT INTO {TABLE} SELECT * REPLACE ('allow' AS Decision, 'forged-rule' AS Rule, "
                f"repeat('f', 64) AS Hash) FROM {RECORDS} AND Seq = {seq}"
            )
        elif kind == "reorder":
            result = client.query(f"SELECT * FROM {RECORDS} AND Seq IN ({seq}, {seq + 1}) ORDER BY Seq")
            rows = [list(r) for r in result.result_rows]
            seq_col = result.column_names.index("Seq")
            rows[0][seq_col], rows[1][seq_col] = seq + 1, seq
            client.command(f"ALTER TABLE {TABLE} DELETE WHERE Type = 'record' AND Seq IN ({seq}, {seq + 1}) {SYNC}")
            client.insert("audit_chain", rows, column_names=list(result.column_names), database="bastion")
        elif kind == "rehash":
            rehash(client, seq)
        elif kind == "view":
            show_decision(client, records(client, seq, seq)[0]["SpanId"], "deny")
        elif kind == "forge":
            forge(client, seq)
        elif kind == "resign":
            resign(client, seq)
        else:
            raise SystemExit(f"unknown kind {kind!r}")
    finally:
        client.close()


KINDS = ("edit", "delete", "truncate", "insert", "reorder", "rehash", "view", "forge", "resign")

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
