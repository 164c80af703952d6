"""The audit trail's export formats: each reads back, with the same records and flat rows."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pyarrow.parquet as pq
import pytest

from bastion.dashboard import export

RECORDS: list[dict[str, Any]] = [
    {"trace_id": "ab" * 16, "agent_id": "agent-1", "decision": "deny", "input_tokens": None, "verified": True},
    {
        "trace_id": "cd" * 16,
        "agent_id": "agent-2",
        "decision": "allow",
        "input_tokens": 12,
        "verified": False,
        "pii": {"EMAIL_ADDRESS": 1},  # a key only one record has, holding a map
    },
]


def read(data: bytes, name: str) -> list[dict[str, Any]]:
    if name == "CSV":
        return list(csv.DictReader(io.StringIO(data.decode())))
    if name == "JSON Lines":
        return [json.loads(line) for line in data.decode().splitlines()]
    return list(pq.read_table(io.BytesIO(data)).to_pylist())


@pytest.mark.parametrize("name", list(export.FORMATS))
def test_every_format_reads_back(name: str) -> None:
    rows = read(export.encode(RECORDS, name), name)
    assert [r["trace_id"] for r in rows] == [r["trace_id"] for r in RECORDS]
    if name == "JSON Lines":
        assert rows == RECORDS
    else:
        # One column per key any record has; nested values are JSON text; CSV shows a missing
        # value as an empty cell, never "None".
        assert list(rows[0]) == ["trace_id", "agent_id", "decision", "input_tokens", "verified", "pii"]
        assert json.loads(rows[1]["pii"]) == {"EMAIL_ADDRESS": 1}
        assert rows[0]["input_tokens"] in ("", None)
    assert export.file_name(name).endswith("." + export.FORMATS[name][0])


@pytest.mark.parametrize("name", list(export.FORMATS))
def test_no_records_is_an_empty_file_not_an_error(name: str) -> None:
    assert read(export.encode([], name), name) == []


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="'XML'"):
        export.encode(RECORDS, "XML")
