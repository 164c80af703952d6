"""The audit trail's hash chain: canonical records, their hashes, and what they say of a span.

Each proxy instance chains its decision records: record ``n`` carries ``prev_hash``, the hash of
record ``n - 1`` (:data:`GENESIS` for the first), and its own ``hash``, the SHA-256 of its
canonical serialization (sorted-key compact JSON of every field but ``hash`` and ``signature``).
The instance signs each record's hash (:mod:`bastion.audit_keys`), so nobody without its private
key can edit, insert or re-hash a record. ``view_hash`` covers what the audit view shows of the
decision span (its name, service, status, duration and attributes), so a span edited in the
store no longer matches its signed record. :mod:`bastion.audit_verify` checks all of it.

Pure functions over plain dicts: the proxy builds records with them, the collector stores them
as columns, and ``bastion audit verify`` recomputes them from what the collector returns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from bastion import semconv
from bastion.audit_keys import RECORD, Signer

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
# Hashed when not empty, so records written before a field existed keep their hash.
OPTIONAL_FIELDS: Final = ("view_hash",)
INT_FIELDS: Final = frozenset({"seq", "timestamp"})
AUDIT_ATTRIBUTES: Final = "bastion.audit."
"""Attributes with this prefix carry the chain itself and are not part of a span's view."""


def canonical(record: Mapping[str, Any]) -> str:
    """The record's fields (not its hash) as sorted-key compact JSON: the bytes that are hashed."""
    values = {f: int(record[f]) if f in INT_FIELDS else str(record[f]) for f in FIELDS}
    values.update({f: str(record[f]) for f in OPTIONAL_FIELDS if record.get(f)})
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(record).encode()).hexdigest()


def seal(
    fields: Mapping[str, Any], *, instance: str, seq: int, prev_hash: str, signer: Signer | None = None
) -> dict[str, Any]:
    """A complete chained record: ``fields`` plus chain position, ``hash`` and ``signature``."""
    record: dict[str, Any] = {f: fields.get(f, 0 if f in INT_FIELDS else "") for f in (*FIELDS, *OPTIONAL_FIELDS)}
    record.update(instance=instance, seq=seq, prev_hash=prev_hash)
    record["hash"] = record_hash(record)
    record["signature"] = signer.sign(RECORD, instance, seq, record["hash"]) if signer else ""
    return record


@dataclass(frozen=True)
class SpanView:
    """A stored decision span as the audit view reads it (the collector's row, attributes as strings)."""

    timestamp: int
    trace_id: str
    span_id: str
    span_name: str
    service_name: str
    duration: int
    status_code: str
    attributes: Mapping[str, str]

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> SpanView:
        return cls(
            timestamp=int(doc["timestamp"]),
            trace_id=str(doc["trace_id"]),
            span_id=str(doc["span_id"]),
            span_name=str(doc["span_name"]),
            service_name=str(doc["service_name"]),
            duration=int(doc["duration"]),
            status_code=str(doc["status_code"]),
            attributes={str(k): str(v) for k, v in dict(doc["attributes"]).items()},
        )


def view_hash(span: SpanView) -> str:
    """SHA-256 over what the audit view shows of ``span`` (every attribute but the chain's own)."""
    shown = {
        "name": span.span_name,
        "service": span.service_name,
        "status": span.status_code,
        "duration": span.duration,
        "attributes": {k: v for k, v in span.attributes.items() if not k.startswith(AUDIT_ATTRIBUTES)},
    }
    return hashlib.sha256(json.dumps(shown, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def span_fields(span: SpanView) -> dict[str, Any]:
    """The decision record's fields that come from the span (the chain adds its position)."""
    attrs = span.attributes
    target = attrs.get(semconv.GEN_AI_TOOL_NAME) or attrs.get(semconv.GEN_AI_REQUEST_MODEL)
    if not target:
        port = attrs.get(semconv.SERVER_PORT, "")  # set on CONNECT and raw TCP records: host:port
        target = attrs.get(semconv.SERVER_ADDRESS, "") + (f":{port}" if port else "") + attrs.get(semconv.URL_PATH, "")
    return {
        "timestamp": span.timestamp,
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "agent": attrs.get(semconv.BASTION_AGENT_ID, ""),
        "decision": attrs.get(semconv.BASTION_DECISION, ""),
        "rule": attrs.get(semconv.BASTION_POLICY_RULE, ""),
        "policy_version": attrs.get(semconv.BASTION_POLICY_VERSION, ""),
        "kind": attrs.get(semconv.BASTION_CALL_KIND, ""),
        "target": target,
        "view_hash": view_hash(span),
    }
