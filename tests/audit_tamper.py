"""Tamper with a stopped collector's audit chain, as an attacker with store access would.

Run as ``python audit_tamper.py DATA_DIR KIND SEQ`` (one chDB data path per process, so a child
process). KIND is edit, delete, insert, reorder or truncate; SEQ is the first record touched.
"""

from __future__ import annotations

import sys

import clickhouse_connect

TABLE = "bastion.audit_chain"
RECORDS = f"{TABLE} WHERE Type = 'record'"


def main(data_dir: str, kind: str, seq: int) -> None:
    client = clickhouse_connect.get_client(dsn=f"chdb://{data_dir}")
    sync = "SETTINGS mutations_sync = 2"
    try:
        if kind == "edit":
            client.command(f"ALTER TABLE {TABLE} UPDATE Decision = 'deny' WHERE Type = 'record' AND Seq = {seq} {sync}")
        elif kind == "delete":
            client.command(f"ALTER TABLE {TABLE} DELETE WHERE Type = 'record' AND Seq = {seq} {sync}")
        elif kind == "truncate":
            client.command(f"ALTER TABLE {TABLE} DELETE WHERE Type = 'record' AND Seq >= {seq} {sync}")
        elif kind == "insert":
            client.command(
                f"INSERT INTO {TABLE} SELECT Instance, Type, Seq, Timestamp, TraceId, SpanId, Agent, 'allow', "
                f"'forged-rule', PolicyVersion, Kind, Target, PrevHash, repeat('f', 64) FROM {RECORDS} AND Seq = {seq}"
            )
        elif kind == "reorder":
            result = client.query(f"SELECT * FROM {RECORDS} AND Seq IN ({seq}, {seq + 1}) ORDER BY Seq")
            rows = [list(r) for r in result.result_rows]
            seq_col = result.column_names.index("Seq")
            rows[0][seq_col], rows[1][seq_col] = seq + 1, seq
            client.command(f"ALTER TABLE {TABLE} DELETE WHERE Type = 'record' AND Seq IN ({seq}, {seq + 1}) {sync}")
            client.insert("audit_chain", rows, column_names=list(result.column_names), database="bastion")
        else:
            raise SystemExit(f"unknown kind {kind!r}")
    finally:
        client.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
