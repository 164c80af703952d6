"""The filtered audit trail as a file to download: CSV, JSON Lines or Parquet.

The records are the collector API's audit items, as the audit page shows them; nested values (maps,
lists) become JSON text in CSV and Parquet so that every format holds one flat row per record.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

Json = dict[str, Any]

# name shown -> (file extension, media type)
FORMATS: Final = {
    "CSV": ("csv", "text/csv"),
    "JSON Lines": ("jsonl", "application/x-ndjson"),
    "Parquet": ("parquet", "application/vnd.apache.parquet"),
}
# At most this many records go into one file (the newest); the page says when a file stops there.
MAX_RECORDS: Final = 50_000


def encode(items: list[Json], name: str) -> bytes:
    """``items`` in the format ``name`` (a key of FORMATS)."""
    if name == "JSON Lines":
        return "".join(json.dumps(item, default=str, ensure_ascii=False) + "\n" for item in items).encode()
    columns = _columns(items)
    rows = [{c: _flat(item.get(c)) for c in columns} for item in items]
    if name == "CSV":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows({c: "" if v is None else v for c, v in row.items()} for row in rows)
        return out.getvalue().encode()
    if name == "Parquet":
        table = pa.Table.from_pylist(rows) if rows else pa.table({c: pa.array([], pa.string()) for c in columns})
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()
    raise ValueError(f"Export format {name!r} is not one of {', '.join(FORMATS)}.")


def file_name(name: str, stem: str = "bastion-audit") -> str:
    return f"{stem}.{FORMATS[name][0]}"


def _columns(items: list[Json]) -> list[str]:
    """Every key any record has, in first-seen order."""
    seen: dict[str, None] = {}
    for item in items:
        seen.update(dict.fromkeys(item))
    return list(seen)


def _flat(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str, ensure_ascii=False)
    return value
