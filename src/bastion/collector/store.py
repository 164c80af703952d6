"""The span store: one clickhouse-connect client, embedded chDB or a ClickHouse server.

chDB runs one query at a time, so every call takes the store's lock. The methods block; the
app calls them from worker threads, never on the event loop. Every value reaches ClickHouse as
a query parameter (``{name:Type}``), never inside the SQL text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from bastion import semconv
from bastion.audit_chain import SpanView
from bastion.collector import schema, views
from bastion.collector.schema import SpanRow
from bastion.collector.views import AuditFilters, Json
from bastion.settings import CollectorSettings

SpanCheck = Callable[[Sequence[SpanView]], list[str | None]]
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_TABLE: Final = "{db:Identifier}.{table:Identifier}"
_LOOKUP: Final = "{db:Identifier}.{lookup:Identifier}"

_AUDIT_SELECT: Final = f"""\
SELECT toUnixTimestamp64Nano(Timestamp), TraceId, SpanId, SpanName, ServiceName, Duration, StatusCode,
    SpanAttributes
FROM {_TABLE}
WHERE """
_AUDIT_ORDER: Final = """
ORDER BY Timestamp DESC, TraceId DESC, SpanId DESC
LIMIT {limit:UInt32} OFFSET {offset:UInt64}"""

# Each audit filter is a fixed SQL condition over its own parameter.
_AUDIT_CONDITIONS: Final = {
    "agent": "SpanAttributes[{agent_key:String}] = {agent:String}",
    "decision": "SpanAttributes[{decision_key:String}] = {decision:String}",
    "kind": "SpanAttributes[{kind_key:String}] = {kind:String}",
    "since": "Timestamp >= fromUnixTimestamp64Nano({since:Int64})",
    "until": "Timestamp <= fromUnixTimestamp64Nano({until:Int64})",
}

# Columns in SpanRow order; the trace-id lookup table bounds the scan to the trace's time range.
# The bounds are cast to DateTime64: on ClickHouse 26.9, `Timestamp < <DateTime>` wrongly skips
# parts through the toDateTime(Timestamp) primary key.
_TRACE: Final = f"""\
SELECT toUnixTimestamp64Nano(Timestamp), TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind,
    ServiceName, ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode,
    StatusMessage, arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp), Events.Name,
    Events.Attributes, Links.TraceId, Links.SpanId, Links.TraceState, Links.Attributes
FROM {_TABLE}
WHERE TraceId = {{trace_id:String}}
    AND Timestamp >= (SELECT toDateTime64(min(Start), 9) FROM {_LOOKUP} WHERE TraceId = {{trace_id:String}})
    AND Timestamp < (SELECT toDateTime64(max(End) + 1, 9) FROM {_LOOKUP} WHERE TraceId = {{trace_id:String}})
ORDER BY Timestamp, SpanId"""


_ALERTS: Final = f"""\
SELECT toUnixTimestamp64Nano(Timestamp), TraceId, ServiceName, SpanAttributes
FROM {_TABLE}
WHERE mapContains(SpanAttributes, {{alert_key:String}})
ORDER BY Timestamp DESC
LIMIT {{limit:UInt32}}"""


_DECISIONS_BETWEEN: Final = """\
FROM {db:Identifier}.{table:Identifier}
WHERE mapContains(SpanAttributes, {decision_key:String})
    AND Timestamp >= fromUnixTimestamp64Nano({since:Int64}) AND Timestamp <= fromUnixTimestamp64Nano({until:Int64})"""
_OVER_TIME: Final = f"""\
SELECT toUnixTimestamp(toStartOfInterval(Timestamp, toIntervalSecond({{step:UInt32}}))) AS t,
    SpanAttributes[{{decision_key:String}}] AS d, count()
{_DECISIONS_BETWEEN}
GROUP BY t, d ORDER BY t, d"""
_TOP_RULES: Final = f"""\
SELECT SpanAttributes[{{rule_key:String}}] AS r, SpanAttributes[{{decision_key:String}}] AS d, count() AS n
{_DECISIONS_BETWEEN}
GROUP BY r, d ORDER BY n DESC, r, d LIMIT 20"""
_PER_AGENT: Final = f"""\
SELECT SpanAttributes[{{agent_key:String}}] AS a, count() AS n,
    countIf(SpanAttributes[{{decision_key:String}}] = 'deny'),
    countIf(SpanAttributes[{{decision_key:String}}] = 'review')
{_DECISIONS_BETWEEN}
GROUP BY a ORDER BY n DESC, a LIMIT 50"""


class Store:
    def __init__(self, client: Client, database: str, table: str = schema.TRACES_TABLE) -> None:
        schema.identifier(database)
        self.database = database
        self.table = table
        self._client = client
        self._lock = threading.Lock()
        self._names = {"db": database, "table": table, "lookup": f"{table}_trace_id_ts"}
        self._column_names = [name for name, _ in schema.INSERT_COLUMNS]
        self._column_types = [kind for _, kind in schema.INSERT_COLUMNS]

    @classmethod
    def open(cls, settings: CollectorSettings) -> Store:
        """Connect to ``settings.dsn`` (``chdb:///path`` or ``http(s)://``)."""
        return cls(clickhouse_connect.get_client(dsn=settings.dsn), settings.database)

    def migrate(self) -> None:
        """Create the database, tables and view if they do not exist."""
        with self._lock:
            for statement in schema.statements(self.database, table=self.table):
                self._client.command(statement)

    def insert_spans(self, rows: Sequence[SpanRow]) -> None:
        """One INSERT of all ``rows``."""
        if not rows:
            return
        with self._lock:
            self._client.insert(
                self.table,
                rows,
                column_names=self._column_names,
                column_type_names=self._column_types,
                database=self.database,
            )

    def audit(self, filters: AuditFilters, check: SpanCheck | None = None) -> Json:
        """A page of spans that carry a governance decision, newest first.

        ``check`` says of each span whether it matches its signed audit record (None) or why not;
        each item carries the answer as ``verified`` and ``unverified_reason``.
        """
        limit = max(1, min(filters.limit, views.MAX_LIMIT))
        offset = max(0, filters.offset)
        params: dict[str, Any] = {**self._names, "limit": limit + 1, "offset": offset}
        conditions = ["mapContains(SpanAttributes, {decision_key:String})"]
        params["decision_key"] = semconv.BASTION_DECISION
        for name, key in (
            ("agent", semconv.BASTION_AGENT_ID),
            ("decision", semconv.BASTION_DECISION),
            ("kind", semconv.BASTION_CALL_KIND),
        ):
            value = getattr(filters, name)
            if value is not None:
                conditions.append(_AUDIT_CONDITIONS[name])
                params[name], params[f"{name}_key"] = value, key
        for name in ("since", "until"):
            moment = getattr(filters, name)
            if moment is not None:
                conditions.append(_AUDIT_CONDITIONS[name])
                params[name] = max(_INT64_MIN, min(_INT64_MAX, views.unix_nanos(moment)))
        sql = _AUDIT_SELECT + "\n    AND ".join(conditions) + _AUDIT_ORDER
        rows = self._query(sql, params)
        more = len(rows) > limit
        rows = rows[:limit]
        problems = check([SpanView(*row) for row in rows]) if check else [views.NOT_CHECKED] * len(rows)
        items = [views.audit_item(*row, problem=problem) for row, problem in zip(rows, problems, strict=True)]
        return {"items": items, "limit": limit, "offset": offset, "next_offset": offset + limit if more else None}

    def alerts(self, limit: int) -> list[Json]:
        """The newest alert events (spans that carry bastion.alert.type)."""
        params = {**self._names, "alert_key": semconv.BASTION_ALERT_TYPE, "limit": max(1, min(limit, views.MAX_LIMIT))}
        return [views.alert_item(*row) for row in self._query(_ALERTS, params)]

    def trace(self, trace_id: str) -> list[Json]:
        """Every stored span of the trace (lowercase hex id), oldest first."""
        rows = self._query(_TRACE, {**self._names, "trace_id": trace_id})
        return [views.span_item(SpanRow(*row)) for row in rows]

    def ping(self) -> bool:
        """Whether the store answers."""
        try:
            with self._lock:
                return bool(self._client.ping())
        except Exception:
            return False

    def command(self, sql: str, params: dict[str, Any]) -> None:
        """One statement with parameters (approvals' DDL)."""
        with self._lock:
            self._client.command(sql, parameters=params)

    def rows(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        """The rows of one query with parameters."""
        return self._query(sql, params)

    def insert_rows(self, table: str, rows: Sequence[Sequence[Any]], column_names: list[str]) -> None:
        """One INSERT into another table of the database (approvals and agent controls)."""
        with self._lock:
            self._client.insert(table, rows, column_names=column_names, database=self.database)

    def close(self) -> None:
        with self._lock:
            self._client.close()

    def overview(self, since: datetime, until: datetime, step_seconds: int) -> Json:
        """Aggregates of the decision spans between two times, each one ClickHouse GROUP BY: decisions
        per time step by effect, the rules that decided most, and each agent's calls, denials and holds."""
        params: dict[str, Any] = {
            **self._names,
            "since": views.unix_nanos(since),
            "until": views.unix_nanos(until),
            "step": max(1, step_seconds),
            "decision_key": semconv.BASTION_DECISION,
            "rule_key": semconv.BASTION_POLICY_RULE,
            "agent_key": semconv.BASTION_AGENT_ID,
        }
        over_time = self._query(_OVER_TIME, params)
        rules = self._query(_TOP_RULES, params)
        agents = self._query(_PER_AGENT, params)
        return {
            "decisions_over_time": [
                {"time": views.iso_time(int(t) * 10**9), "decision": d, "count": int(n)} for t, d, n in over_time
            ],
            "top_rules": [{"rule": r, "decision": d, "count": int(n)} for r, d, n in rules],
            "agents": [
                {"agent_id": a, "calls": int(n), "denials": int(denied), "holds": int(held)}
                for a, n, denied, held in agents
            ],
        }

    def _query(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        with self._lock:
            return list(self._client.query(sql, parameters=params).result_rows)
