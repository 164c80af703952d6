"""Pure helpers that turn the collector's JSON into what the dashboard pages show."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bastion import semconv

Json = dict[str, Any]

ANY: Final = "any"
DECISIONS: Final = (ANY, "allow", "deny", "review", "error")
KINDS: Final = (ANY, "model", "http", "mcp", "tool", semconv.KIND_CONNECT, semconv.KIND_TCP)
CUSTOM: Final = "Custom"
TIME_RANGES: Final = {
    "Last hour": timedelta(hours=1),
    "Last day": timedelta(days=1),
    "Last week": timedelta(weeks=1),
}
DECISION_ICONS: Final = {"allow": "✅", "deny": "⛔", "review": "⏸️", "error": "⚠️"}
SIGNED: Final = "🔏 signed"
UNVERIFIED: Final = "❗ unverified"
_TRACE_ID: Final = re.compile(r"[0-9a-fA-F]{32}")


def time_window(name: str, now: datetime) -> tuple[datetime, datetime]:
    """``since`` and ``until`` for a named range ending now."""
    return now - TIME_RANGES[name], now


def is_trace_id(text: str) -> bool:
    return bool(_TRACE_ID.fullmatch(text))


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def show_time(text: str | None) -> str:
    """An ISO-8601 timestamp as ``YYYY-MM-DD HH:MM:SS.mmm`` UTC."""
    moment = parse_time(text)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if moment else (text or "")


def audit_rows(items: list[Json]) -> list[Json]:
    """One table row per audit record, in the collector's order (newest first); no cell is ``None``."""
    return [
        {
            "Time (UTC)": show_time(item.get("timestamp")),
            "Agent": cell(item.get("agent_id")),
            "Role": cell(item.get("agent_role")),
            "Decision": decision_label(
                item.get("decision"), item.get("approval_status"), item.get("approval_approver")
            ),
            "Rule": cell(item.get("rule")),
            "Kind": cell(item.get("kind")),
            "Operation": operation(item),
            "Model": cell(item.get("request_model") or item.get("response_model")),
            "Tokens in": cell(item.get("input_tokens")),
            "Tokens out": cell(item.get("output_tokens")),
            "HTTP": cell(item.get("http_status")),
            "Duration (ms)": cell(_round(item.get("duration_ms"))),
            "Trace": cell(item.get("trace_id")),
            "Audit": SIGNED if item.get("verified") is True else UNVERIFIED,
        }
        for item in items
    ]


def cell(value: Any) -> str:
    """What a table cell shows: the value as text, and an empty string (never ``None`` or ``nan``) when missing.

    Text throughout, so a column with a gap reads the same as one without (Streamlit would turn it
    to text anyway, or show the gap as ``None``).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def operation(item: Json) -> str:
    """The operation with what it acted on: the tool's name, else the MCP method (``execute_tool send_money``)."""
    target = item.get("tool_name") or item.get("mcp_method")
    return " ".join(str(part) for part in (item.get("operation"), target) if part)


def decision_label(decision: Any, approval: Any = None, approver: Any = None) -> str:
    """The decision with its icon; a held call says how its approval ended and who decided it."""
    if approval == "approved":
        return f"{DECISION_ICONS['allow']} approved" + (f" by {approver}" if approver else "")
    label = _decision(decision)
    if approval == "denied" and approver:
        return f"{DECISION_ICONS['deny']} denied by {approver}"
    if approval:
        return f"{label} (approval {approval})".lstrip()
    return label


def unverified(items: list[Json]) -> list[str]:
    """A line for each record the collector could not match to a signed audit link."""
    return [
        f"{show_time(item.get('timestamp'))} trace {item.get('trace_id')}: {item.get('unverified_reason') or 'unknown'}"
        for item in items
        if item.get("verified") is not True
    ]


def _decision(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    icon = DECISION_ICONS.get(value)
    return f"{icon} {value}" if icon else value


def _round(value: Any) -> float | None:
    return round(float(value), 2) if isinstance(value, int | float) else None


def span_tree(spans: list[Json]) -> list[tuple[int, Json]]:
    """Spans depth-first from the roots, children by start time, each with its depth.

    A span whose parent is not in the trace counts as a root.
    """
    ordered = sorted(spans, key=lambda s: str(s.get("timestamp") or ""))
    ids = {s.get("span_id") for s in ordered}
    children: dict[Any, list[Json]] = {}
    for span in ordered:
        parent = span.get("parent_span_id") or None
        children.setdefault(parent if parent in ids else None, []).append(span)
    out: list[tuple[int, Json]] = []
    stack = [(0, s) for s in reversed(children.get(None, []))]
    while stack:
        depth, span = stack.pop()
        out.append((depth, span))
        stack.extend((depth + 1, c) for c in reversed(children.get(span.get("span_id"), [])))
    return out


def span_rows(tree: list[tuple[int, Json]]) -> list[Json]:
    """The trace overview table: one row per span, indented by depth, start relative to the first."""
    starts = [t for t in (parse_time(s.get("timestamp")) for _, s in tree) if t]
    first = min(starts) if starts else None
    rows = []
    for depth, span in tree:
        start = parse_time(span.get("timestamp"))
        offset = (start - first).total_seconds() * 1000 if start and first else None
        attributes = span.get("attributes") or {}
        rows.append(
            {
                "Span": "\u2003" * depth + ("↳ " if depth else "") + cell(span.get("span_name")),
                "Service": cell(span.get("service_name")),
                "Kind": cell(span.get("span_kind")),
                "Start (ms)": cell(_round(offset)),
                "Duration (ms)": cell(_round(span.get("duration_ms"))),
                "Status": cell(span.get("status_code")),
                "Decision": decision_label(
                    attributes.get(semconv.BASTION_DECISION),
                    attributes.get(semconv.BASTION_APPROVAL_STATUS),
                    attributes.get(semconv.BASTION_APPROVAL_APPROVER),
                ),
            }
        )
    return rows


def span_label(depth: int, span: Json) -> str:
    duration = _round(span.get("duration_ms"))
    parts = [
        cell(span.get("span_name")),
        cell(span.get("service_name")),
        f"{cell(duration)} ms",
        cell(span.get("status_code")),
    ]
    return "\u2003" * depth + " · ".join(parts)
