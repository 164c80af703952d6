"""The JSON shapes the collector's API answers with, built from stored spans.

Times are ISO-8601 in UTC with a ``Z``; durations are milliseconds. An attribute a span does not
carry is ``null``, never ``""``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from bastion import semconv
from bastion.collector.schema import SpanRow

Json = dict[str, Any]

MAX_LIMIT: Final = 500
NOT_CHECKED: Final = "not checked against the audit chain"

# Audit item field -> span attribute, for string fields and for integer fields.
AUDIT_STRINGS: Final = {
    "agent_id": semconv.BASTION_AGENT_ID,
    "agent_role": semconv.BASTION_AGENT_ROLE,
    "decision": semconv.BASTION_DECISION,
    "rule": semconv.BASTION_POLICY_RULE,
    "policy_version": semconv.BASTION_POLICY_VERSION,
    "kind": semconv.BASTION_CALL_KIND,
    "operation": semconv.GEN_AI_OPERATION_NAME,
    "provider": semconv.GEN_AI_PROVIDER_NAME,
    "request_model": semconv.GEN_AI_REQUEST_MODEL,
    "response_model": semconv.GEN_AI_RESPONSE_MODEL,
    "error_type": semconv.ERROR_TYPE,
    "tool_name": semconv.GEN_AI_TOOL_NAME,
    "mcp_method": semconv.MCP_METHOD_NAME,
    "shadow_decision": semconv.BASTION_SHADOW_DECISION,
    "shadow_rule": semconv.BASTION_SHADOW_RULE,
    "approval_status": semconv.BASTION_APPROVAL_STATUS,
    "approval_approver": semconv.BASTION_APPROVAL_APPROVER,
}
AUDIT_INTS: Final = {
    "input_tokens": semconv.GEN_AI_USAGE_INPUT_TOKENS,
    "output_tokens": semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
    "http_status": semconv.HTTP_RESPONSE_STATUS_CODE,
}


@dataclass(frozen=True)
class AuditFilters:
    """Which audit records to return; ``None`` means no filter."""

    agent: str | None = None
    decision: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    offset: int = 0


def iso_time(ns: int) -> str:
    """Unix nanoseconds as ISO-8601 UTC with microseconds, e.g. ``2025-01-02T03:04:05.000006Z``."""
    seconds, rest = divmod(ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def unix_nanos(moment: datetime) -> int:
    """A datetime as Unix nanoseconds; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def audit_item(
    timestamp: int,
    trace_id: str,
    span_id: str,
    span_name: str,
    service_name: str,
    duration: int,
    status_code: str,
    attributes: dict[str, str],
    *,
    problem: str | None = NOT_CHECKED,
) -> Json:
    """One audit row; ``problem`` is why it does not match a signed audit record (None: it does)."""
    item: Json = {
        "timestamp": iso_time(timestamp),
        "trace_id": trace_id,
        "span_id": span_id,
        "span_name": span_name,
        "service_name": service_name,
        "duration_ms": duration / 1e6,
        "status_code": status_code,
    }
    for field, key in AUDIT_STRINGS.items():
        item[field] = attributes.get(key)
    for field, key in AUDIT_INTS.items():
        item[field] = _int(attributes.get(key))
    item["verified"] = problem is None
    item["unverified_reason"] = problem
    return item


def alert_item(timestamp: int, trace_id: str, service_name: str, attributes: dict[str, str]) -> Json:
    return {
        "timestamp": iso_time(timestamp),
        "trace_id": trace_id,
        "service_name": service_name,
        "type": attributes.get(semconv.BASTION_ALERT_TYPE),
        "message": attributes.get(semconv.BASTION_ALERT_MESSAGE),
        "policy_version": attributes.get(semconv.BASTION_POLICY_VERSION),
    }


def span_item(row: SpanRow) -> Json:
    return {
        "timestamp": iso_time(row.timestamp),
        "trace_id": row.trace_id,
        "span_id": row.span_id,
        "parent_span_id": row.parent_span_id,
        "trace_state": row.trace_state,
        "span_name": row.span_name,
        "span_kind": row.span_kind,
        "service_name": row.service_name,
        "scope_name": row.scope_name,
        "scope_version": row.scope_version,
        "duration_ms": row.duration / 1e6,
        "status_code": row.status_code,
        "status_message": row.status_message,
        "attributes": row.span_attributes,
        "resource_attributes": row.resource_attributes,
        "events": [
            {"timestamp": iso_time(ts), "name": name, "attributes": attrs}
            for ts, name, attrs in zip(row.events_timestamp, row.events_name, row.events_attributes, strict=True)
        ],
        "links": [
            {"trace_id": t, "span_id": s, "trace_state": state, "attributes": attrs}
            for t, s, state, attrs in zip(
                row.links_trace_id, row.links_span_id, row.links_trace_state, row.links_attributes, strict=True
            )
        ],
    }


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None
