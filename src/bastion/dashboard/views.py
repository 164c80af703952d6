"""Pure helpers that turn the collector's JSON into what the dashboard pages show."""

from __future__ import annotations

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
    """One table row per audit record, in the collector's order (newest first)."""
    return [
        {
            "Time (UTC)": show_time(item.get("timestamp")),
            "Agent": item.get("agent_id"),
            "Role": item.get("agent_role"),
            "Decision": _decision(item.get("decision")),
            "Rule": item.get("rule"),
            "Kind": item.get("kind"),
            "Operation": item.get("operation"),
            "Model": item.get("request_model") or item.get("response_model"),
            "Tokens in": item.get("input_tokens"),
            "Tokens out": item.get("output_tokens"),
            "HTTP": item.get("http_status"),
            "Duration (ms)": _round(item.get("duration_ms")),
            "Trace": item.get("trace_id"),
            "Audit": SIGNED if item.get("verified") is True else UNVERIFIED,
        }
        for item in items
    ]


def unverified(items: list[Json]) -> list[str]:
    """A line for each record the collector could not match to a signed audit link."""
    return [
        f"{show_time(item.get('timestamp'))} trace {item.get('trace_id')}: {item.get('unverified_reason') or 'unknown'}"
        for item in items
        if item.get("verified") is not True
    ]


def _decision(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
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
                "Span": "\u2003" * depth + ("↳ " if depth else "") + str(span.get("span_name")),
                "Service": span.get("service_name"),
                "Kind": span.get("span_kind"),
                "Start (ms)": _round(offset),
                "Duration (ms)": _round(span.get("duration_ms")),
                "Status": span.get("status_code"),
                "Decision": _decision(attributes.get(semconv.BASTION_DECISION)),
            }
        )
    return rows


def span_label(depth: int, span: Json) -> str:
    duration = _round(span.get("duration_ms"))
    parts = [str(span.get("span_name")), str(span.get("service_name")), f"{duration} ms", str(span.get("status_code"))]
    return "\u2003" * depth + " · ".join(parts)
