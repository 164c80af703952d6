"""``bastion audit verify|export`` and ``bastion schema``: the audit trail for auditors.

Both audit commands read through the collector's API (only the collector opens the store) and
recompute everything themselves: verify trusts no hash the collector reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx

from bastion import audit_chain
from bastion import settings as s

EXPORT_FIELDS: Final = (*audit_chain.FIELDS, "hash")


def fetch(
    collector_url: str,
    *,
    type: str = "record",
    since: str | None = None,
    until: str | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every chain record (or head) from the collector, in (instance, seq) order, page by page."""
    params: dict[str, Any] = {"type": type, "limit": 5000}
    if since:
        params["since"] = since
    if until:
        params["until"] = until
    with httpx.Client(base_url=collector_url.rstrip("/"), timeout=60, headers=headers) as client:
        while True:
            response = client.get("/api/audit/chain", params=params)
            response.raise_for_status()
            page = response.json()
            yield from page["items"]
            if not page["next"]:
                return
            params.update(page["next"])


def _headers(args: argparse.Namespace) -> dict[str, str]:
    return s.collector_headers(s.operator_token(args))


def verify(args: argparse.Namespace) -> int:
    try:
        records = list(fetch(args.collector_url, since=args.since, until=args.until, headers=_headers(args)))
        heads = [] if args.until else list(fetch(args.collector_url, type="head", headers=_headers(args)))
    except httpx.HTTPError as e:
        print(f"bastion audit verify: cannot read the audit chain from {args.collector_url}: {e}", file=sys.stderr)
        return 2
    report = audit_chain.verify(records, heads, from_start=not args.since)
    if not report.intact:
        for broken in report.breaks:
            print(f"BROKEN: {broken}")
        return 1
    print(f"OK: {report.records} records in {report.instances} chains, every link intact")
    return 0


def export(args: argparse.Namespace) -> int:
    try:
        records = [
            {f: r[f] for f in EXPORT_FIELDS}
            for r in fetch(args.collector_url, since=args.since, until=args.until, headers=_headers(args))
        ]
    except httpx.HTTPError as e:
        print(f"bastion audit export: cannot read the audit chain from {args.collector_url}: {e}", file=sys.stderr)
        return 2
    records.sort(key=lambda r: (r["timestamp"], r["instance"], r["seq"]))
    for r in records:
        r["time"] = datetime.fromtimestamp(r["timestamp"] / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")
    out: Path = args.out
    if args.format == "parquet":
        import pyarrow as pa  # type: ignore[import-untyped]
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        columns = [*EXPORT_FIELDS, "time"]
        table = (
            pa.table({c: [r[c] for r in records] for c in columns})
            if records
            else pa.table(
                {c: pa.array([], pa.int64() if c in audit_chain.INT_FIELDS else pa.string()) for c in columns}
            )
        )
        pq.write_table(table, out)
    else:
        with open(out, "w") as f:
            for r in records:
                f.write(json.dumps(r, sort_keys=True) + "\n")
    print(f"Exported {len(records)} audit records to {out}")
    return 0


def schema(args: argparse.Namespace) -> int:
    from bastion.collector import deploy

    sys.stdout.write(deploy.script(args.database, args.cluster or None))
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser("audit", help="verify and export the tamper-evident audit trail")
    actions = audit.add_subparsers(dest="action", required=True)
    check = actions.add_parser("verify", help="recompute the hash chains; exit 1 at a broken link")
    check.set_defaults(run=verify)
    out = actions.add_parser("export", help="export decision records for auditors")
    out.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl", help="output format")
    out.add_argument("--out", type=Path, required=True, help="output file")
    out.set_defaults(run=export)
    for p in (check, out):
        p.add_argument("--since", help="ISO-8601 start (verify: the first record in range is the anchor)")
        p.add_argument("--until", help="ISO-8601 end")
        s.add_collector_url_option(p)
        s.add_token_option(p)

    ddl = commands.add_parser("schema", help="print the ClickHouse DDL for a server or a cluster")
    s.add_option(
        ddl,
        "--cluster",
        env="BASTION_CLICKHOUSE_CLUSTER",
        default="",
        help="cluster name: Replicated tables ON CLUSTER + Distributed",
    )
    s.add_option(ddl, "--database", env="BASTION_DATABASE", default="bastion", help="database name")
    ddl.set_defaults(run=schema)
