"""``bastion audit verify|export`` and ``bastion schema``: the audit trail for auditors.

Both audit commands read through the collector's API (only the collector opens the store) and
recompute everything themselves: verify trusts no hash or signature check the collector reports.
``verify --file`` checks an export with no collector at all: the export holds the records, the
heads and anchors, and the public keys (the format is in the README).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterator
from dataclasses import field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx

from bastion import audit_chain, audit_verify
from bastion import settings as s
from bastion.audit_chain import SpanView

FORMAT: Final = "bastion-audit-export/1"
EXPORT_FIELDS: Final = (*audit_chain.FIELDS, *audit_chain.OPTIONAL_FIELDS, "hash", "signature")
MARK_FIELDS: Final = ("instance", "seq", "hash", "signature", "timestamp")
KEY_FIELDS: Final = ("instance", "public_key", "signature", "first_seen")
_PARQUET_META: Final = b"bastion.audit"


@dataclasses.dataclass
class Trail:
    """What verify checks: an instance's chain records, heads and anchors, and the public keys."""

    records: list[dict[str, Any]]
    heads: list[dict[str, Any]] = field(default_factory=list)
    anchors: list[dict[str, Any]] = field(default_factory=list)
    keys: list[dict[str, Any]] = field(default_factory=list)
    since: str | None = None
    until: str | None = None


def client(collector_url: str, headers: dict[str, str] | None = None) -> httpx.Client:
    """The collector API client of both commands; ``headers`` carry the operator's token."""
    return httpx.Client(base_url=collector_url.rstrip("/"), timeout=60, headers=headers)


def pages(api: httpx.Client, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every item of a paged collector route, following ``next``."""
    params = {**params, "limit": 5000}
    while True:
        response = api.get(path, params=params)
        response.raise_for_status()
        page = response.json()
        yield from page["items"]
        if not page["next"]:
            return
        params.update(page["next"])


def fetch(
    collector_url: str, *, since: str | None = None, until: str | None = None, headers: dict[str, str] | None = None
) -> Trail:
    """The chain in a time window, with every key, every anchor up to ``until`` and every head
    (none with ``until``: a head recorded after the window's end would read as a lost tail; an
    anchor is recorded before the records that follow it)."""
    window = {k: v for k, v in (("since", since), ("until", until)) if v}
    with client(collector_url, headers) as api:
        trail = Trail(list(pages(api, "/api/audit/chain", {"type": "record", **window})), since=since, until=until)
        trail.anchors = list(pages(api, "/api/audit/chain", {"type": "anchor", **({"until": until} if until else {})}))
        if not until:
            trail.heads = list(pages(api, "/api/audit/chain", {"type": "head"}))
        response = api.get("/api/audit/keys")
        response.raise_for_status()
        trail.keys = list(response.json()["items"])
    return trail


def decision_spans(
    collector_url: str, since: str | None, until: str | None, headers: dict[str, str] | None = None
) -> Iterator[SpanView]:
    window = {k: v for k, v in (("since", since), ("until", until)) if v}
    with client(collector_url, headers) as api:
        for item in pages(api, "/api/audit/spans", window):
            yield SpanView.from_json(item)


def check(trail: Trail, trusted: dict[str, str] | None) -> tuple[audit_verify.Report, dict[str, list[str]]]:
    keys, problems = audit_verify.registered_keys(trail.keys)
    if trusted is not None:
        keys, pinned = audit_verify.pin(keys, trusted)
        problems += pinned
    report = audit_verify.verify(
        trail.records, trail.heads, anchors=trail.anchors, keys=keys, from_start=not trail.since
    )
    return dataclasses.replace(report, breaks=problems + report.breaks), keys


def _headers(args: argparse.Namespace) -> dict[str, str]:
    """The operator's token (BASTION_TOKEN or --token-file): the audit API needs a viewer."""
    return s.collector_headers(s.operator_token(args))


def verify(args: argparse.Namespace) -> int:
    trusted = read_trusted_keys(args.keys) if args.keys else None
    if args.file:
        try:
            trail = read_export(args.file)
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"bastion audit verify: cannot read {args.file}: {e}", file=sys.stderr)
            return 2
        report, _ = check(trail, trusted)
        note = f"offline, from {args.file}; decision spans are not part of an export"
        return _report(report, [], note, pinned=trusted is not None)
    try:
        trail = fetch(args.collector_url, since=args.since, until=args.until, headers=_headers(args))
        report, keys = check(trail, trusted)
        unverified = []
        spans = 0
        by_span: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in trail.records:
            by_span.setdefault((str(r["trace_id"]), str(r["span_id"])), []).append(r)
        for span in decision_spans(args.collector_url, args.since, args.until, _headers(args)):
            spans += 1
            problem = audit_verify.span_problem(span, by_span.get((span.trace_id, span.span_id), []), keys)
            if problem is not None:
                unverified.append(f"decision span trace {span.trace_id} span {span.span_id}: {problem}")
    except httpx.HTTPError as e:
        print(f"bastion audit verify: cannot read the audit chain from {args.collector_url}: {e}", file=sys.stderr)
        return 2
    note = f"{spans} decision spans in the audit view match their signed records"
    return _report(report, unverified, note, pinned=trusted is not None)


def _report(report: audit_verify.Report, unverified: list[str], note: str, *, pinned: bool) -> int:
    for broken in report.breaks:
        print(f"BROKEN: {broken}")
    for line in unverified:
        print(f"UNVERIFIED: {line}")
    if report.breaks or unverified:
        return 1
    print(f"OK: {report.records} records in {report.instances} chains, every link signed and intact; {note}")
    for instance, seq in sorted(report.anchored.items()):
        print(f"  instance {instance} begins in this store after its signed anchor at seq {seq}")
    if not pinned:
        print(
            "  public keys: the first each instance registered, trusted on first use; "
            "pin them with --keys EARLIER_EXPORT to catch a key replaced with the store"
        )
    return 0


def export(args: argparse.Namespace) -> int:
    try:
        trail = fetch(args.collector_url, since=args.since, until=args.until, headers=_headers(args))
    except httpx.HTTPError as e:
        print(f"bastion audit export: cannot read the audit chain from {args.collector_url}: {e}", file=sys.stderr)
        return 2
    records = [{f: r.get(f, "") for f in EXPORT_FIELDS} for r in trail.records]
    records.sort(key=lambda r: (r["timestamp"], r["instance"], r["seq"]))
    for r in records:
        r["time"] = datetime.fromtimestamp(r["timestamp"] / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")
    header = {"type": "export", "format": FORMAT, "since": trail.since, "until": trail.until}
    keys = [{"type": "key", **{f: k[f] for f in KEY_FIELDS}} for k in trail.keys]
    marks = [
        {"type": kind, **{f: m[f] for f in MARK_FIELDS}}
        for kind, rows in (("anchor", trail.anchors), ("head", trail.heads))
        for m in rows
    ]
    out: Path = args.out
    if args.format == "parquet":
        _write_parquet(out, records, {"header": header, "keys": keys, "marks": marks})
    else:
        with open(out, "w") as f:
            for line in (header, *keys, *marks, *({"type": "record", **r} for r in records)):
                f.write(json.dumps(line, sort_keys=True) + "\n")
    print(f"Exported {len(records)} audit records, {len(marks)} heads and anchors and {len(keys)} keys to {out}")
    return 0


def _write_parquet(out: Path, records: list[dict[str, Any]], rest: dict[str, Any]) -> None:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    columns = [*EXPORT_FIELDS, "time"]
    table = (
        pa.table({c: [r[c] for r in records] for c in columns})
        if records
        else pa.table({c: pa.array([], pa.int64() if c in audit_chain.INT_FIELDS else pa.string()) for c in columns})
    )
    pq.write_table(table.replace_schema_metadata({_PARQUET_META: json.dumps(rest)}), out)


def read_export(path: Path) -> Trail:
    """An export (JSONL or Parquet) as the trail it holds."""
    with open(path, "rb") as f:
        parquet = f.read(4) == b"PAR1"
    if parquet:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        rest = json.loads((table.schema.metadata or {})[_PARQUET_META])
        lines = [rest["header"], *rest["keys"], *rest["marks"], *({"type": "record", **r} for r in table.to_pylist())]
    else:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    header = next((line for line in lines if line.get("type") == "export"), None)
    if header is None or header.get("format") != FORMAT:
        raise ValueError(f"not a Bastion audit export (no {FORMAT} header line)")
    trail = Trail([], since=header.get("since"), until=header.get("until"))
    lists = {"record": trail.records, "head": trail.heads, "anchor": trail.anchors, "key": trail.keys}
    for line in lines:
        if line.get("type") in lists:
            lists[line["type"]].append(line)
    return trail


def read_trusted_keys(path: Path) -> dict[str, str]:
    """Trusted public keys by instance: the ``key`` lines of an earlier export."""
    return {k["instance"]: k["public_key"] for k in read_export(path).keys}


def schema(args: argparse.Namespace) -> int:
    from bastion.collector import deploy

    sys.stdout.write(deploy.script(args.database, args.cluster or None))
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser("audit", help="verify and export the tamper-evident audit trail")
    actions = audit.add_subparsers(dest="action", required=True)
    check = actions.add_parser(
        "verify", help="check the signatures, the hash chains and the audit view; exit 1 at a broken link"
    )
    check.add_argument("--file", type=Path, help="verify an export offline instead of the collector's store")
    check.add_argument("--keys", type=Path, help="trust only the public keys in this earlier export")
    check.set_defaults(run=verify)
    out = actions.add_parser("export", help="export the signed records, heads, anchors and public keys")
    out.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl", help="output format")
    out.add_argument("--out", type=Path, required=True, help="output file")
    out.set_defaults(run=export)
    for p in (check, out):
        p.add_argument("--since", help="ISO-8601 start (verify: the first record in range is the anchor)")
        p.add_argument("--until", help="ISO-8601 end")
        s.add_part(p, s.CLIENT)

    ddl = commands.add_parser("schema", help="print the ClickHouse DDL for a server or a cluster")
    cluster = s.CLICKHOUSE_CLUSTER  # spelt --cluster here, as deploy/*.sql's headers name the command
    s.add_option(ddl, "--cluster", env=cluster.env, default=cluster.default, help=cluster.help)
    s.add_setting(ddl, s.DATABASE)
    ddl.set_defaults(run=schema)
