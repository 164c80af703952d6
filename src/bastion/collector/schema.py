"""The store's tables, as data: every table's DDL lives here.

``otel_traces`` and its trace-id lookup table match the OpenTelemetry Collector's ClickHouse
exporter (``exporter/clickhouseexporter``, bloom-filter variant), so the real Collector, Grafana's
ClickHouse plugin and Bastion can share one store. :func:`statements` renders their DDL for the
embedded store; :func:`audit_ddl`, :func:`audit_upgrade` and :func:`keys_ddl` render the audit
tables', :func:`controls_ddl` the approvals board's. ``collector/deploy.py`` renders server or
cluster variants from here alone (``deploy/*.sql``), and the stores run the same statements.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

TRACES_TABLE: Final = "otel_traces"
AUDIT_TABLE: Final = "audit_chain"
KEYS_TABLE: Final = "audit_keys"
CONTROLS_TABLE: Final = "bastion_controls"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_DATABASE = "CREATE DATABASE IF NOT EXISTS {db}{on_cluster}"

_TRACES = """\
CREATE TABLE IF NOT EXISTS {db}.{traces}{on_cluster} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(T64, ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    ResourceAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), \
CAST(ResourceAttributes, 'Array(Tuple(String, String))')),
    SpanAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), \
CAST(SpanAttributes, 'Array(Tuple(String, String))')),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1,
    INDEX idx_lower_span_name lower(SpanName) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = {engine}
PARTITION BY toDate(Timestamp)
PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""

_TRACE_ID_TS = """\
CREATE TABLE IF NOT EXISTS {db}.{lookup}{on_cluster} (
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(ZSTD(1))
) ENGINE = {engine}
PARTITION BY toStartOfWeek(Start)
ORDER BY (TraceId)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""

_TRACE_ID_TS_MV = """\
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{view}{on_cluster}
TO {db}.{lookup}
AS SELECT
    TraceId,
    min(Timestamp) as Start,
    max(Timestamp) as End
FROM {db}.{traces}
WHERE TraceId != ''
GROUP BY TraceId"""


class SpanRow(NamedTuple):
    """One ``otel_traces`` row, in :data:`INSERT_COLUMNS` order. Times are Unix nanoseconds."""

    timestamp: int
    trace_id: str
    span_id: str
    parent_span_id: str
    trace_state: str
    span_name: str
    span_kind: str
    service_name: str
    resource_attributes: dict[str, str]
    scope_name: str
    scope_version: str
    span_attributes: dict[str, str]
    duration: int
    status_code: str
    status_message: str
    events_timestamp: list[int]
    events_name: list[str]
    events_attributes: list[dict[str, str]]
    links_trace_id: list[str]
    links_span_id: list[str]
    links_trace_state: list[str]
    links_attributes: list[dict[str, str]]


# The exporter's INSERT column list (traces_insert.sql) with each column's type.
_AUDIT = """\
CREATE TABLE IF NOT EXISTS {db}.{audit}{on_cluster} (
    Instance LowCardinality(String) CODEC(ZSTD(1)),
    Type LowCardinality(String) CODEC(ZSTD(1)),
    Seq UInt64 CODEC(Delta(8), ZSTD(1)),
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    Agent LowCardinality(String) CODEC(ZSTD(1)),
    Decision LowCardinality(String) CODEC(ZSTD(1)),
    Rule LowCardinality(String) CODEC(ZSTD(1)),
    PolicyVersion LowCardinality(String) CODEC(ZSTD(1)),
    Kind LowCardinality(String) CODEC(ZSTD(1)),
    Target String CODEC(ZSTD(1)),
    PrevHash String CODEC(ZSTD(1)),
    Hash String CODEC(ZSTD(1)),
    ViewHash String CODEC(ZSTD(1)),
    Signature String CODEC(ZSTD(1))
) ENGINE = {engine}
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (Instance, Type, Seq, Hash)
SETTINGS ttl_only_drop_parts = 1"""

# Tables made before records were signed get the new columns (empty in old rows).
_UPGRADE = """\
ALTER TABLE {db}.{audit}{on_cluster}
    ADD COLUMN IF NOT EXISTS ViewHash String CODEC(ZSTD(1)) AFTER Hash,
    ADD COLUMN IF NOT EXISTS Signature String CODEC(ZSTD(1)) AFTER ViewHash"""

_KEYS = """\
CREATE TABLE IF NOT EXISTS {db}.{keys}{on_cluster} (
    Instance LowCardinality(String) CODEC(ZSTD(1)),
    PublicKey String CODEC(ZSTD(1)),
    Signature String CODEC(ZSTD(1)),
    FirstSeen DateTime64(9) CODEC(Delta(8), ZSTD(1))
) ENGINE = {engine}
ORDER BY (Instance, PublicKey)"""

# The approvals board: approvals, grants and agent controls, one JSON body per (Kind, Id) version.
_CONTROLS = """\
CREATE TABLE IF NOT EXISTS {db}.{controls}{on_cluster} (
    Kind LowCardinality(String),
    Id String,
    Version UInt64,
    Body String
) ENGINE = {engine}
ORDER BY (Kind, Id)"""

INSERT_COLUMNS: Final = (
    ("Timestamp", "DateTime64(9)"),
    ("TraceId", "String"),
    ("SpanId", "String"),
    ("ParentSpanId", "String"),
    ("TraceState", "String"),
    ("SpanName", "LowCardinality(String)"),
    ("SpanKind", "LowCardinality(String)"),
    ("ServiceName", "LowCardinality(String)"),
    ("ResourceAttributes", "Map(LowCardinality(String), String)"),
    ("ScopeName", "String"),
    ("ScopeVersion", "String"),
    ("SpanAttributes", "Map(LowCardinality(String), String)"),
    ("Duration", "UInt64"),
    ("StatusCode", "LowCardinality(String)"),
    ("StatusMessage", "String"),
    ("Events.Timestamp", "Array(DateTime64(9))"),
    ("Events.Name", "Array(LowCardinality(String))"),
    ("Events.Attributes", "Array(Map(LowCardinality(String), String))"),
    ("Links.TraceId", "Array(String)"),
    ("Links.SpanId", "Array(String)"),
    ("Links.TraceState", "Array(String)"),
    ("Links.Attributes", "Array(Map(LowCardinality(String), String))"),
)


def identifier(name: str) -> str:
    """``name`` quoted as a ClickHouse identifier, or ValueError if it is not a plain name."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"Database or table name {name!r} is not valid. Use letters, digits and _.")
    return f"`{name}`"


def aggregating(engine: str) -> str:
    """The lookup table's engine for a traces ``engine``, as the exporter derives it."""
    if engine.startswith(("MergeTree", "ReplicatedMergeTree")):
        return engine.replace("MergeTree", "AggregatingMergeTree", 1)
    return engine


def statements(
    database: str,
    *,
    table: str = TRACES_TABLE,
    engine: str = "MergeTree()",
    cluster: str | None = None,
) -> list[str]:
    """The idempotent DDL, in order: database, traces table, lookup table, its view."""
    names = {
        "db": identifier(database),
        "traces": identifier(table),
        "lookup": identifier(f"{table}_trace_id_ts"),
        "view": identifier(f"{table}_trace_id_ts_mv"),
        "on_cluster": f" ON CLUSTER {identifier(cluster)}" if cluster else "",
    }
    return [
        _DATABASE.format(**names),
        _TRACES.format(engine=engine, **names),
        _TRACE_ID_TS.format(engine=aggregating(engine), **names),
        _TRACE_ID_TS_MV.format(**names),
    ]


def audit_ddl(
    database: str, *, engine: str = "ReplacingMergeTree()", cluster: str | None = None, table: str = AUDIT_TABLE
) -> str:
    """The audit chain table (see :mod:`bastion.collector.audit_store`), named ``table``."""
    return _AUDIT.format(**{**_names(database, cluster), "audit": identifier(table)}, engine=engine)


def keys_ddl(
    database: str, *, engine: str = "ReplacingMergeTree()", cluster: str | None = None, table: str = KEYS_TABLE
) -> str:
    """Each proxy instance's audit public keys, in ``table``."""
    return _KEYS.format(**{**_names(database, cluster), "keys": identifier(table)}, engine=engine)


def controls_ddl(
    database: str,
    *,
    engine: str = "ReplacingMergeTree(Version)",
    cluster: str | None = None,
    table: str = CONTROLS_TABLE,
) -> str:
    """The approvals board's table (see :mod:`bastion.collector.approvals`), named ``table``."""
    return _CONTROLS.format(**{**_names(database, cluster), "controls": identifier(table)}, engine=engine)


def audit_upgrade(database: str, table: str = AUDIT_TABLE, cluster: str | None = None) -> str:
    """Adds the signature columns to an audit table made before records were signed."""
    return _UPGRADE.format(**{**_names(database, cluster), "audit": identifier(table)})


def _names(database: str, cluster: str | None) -> dict[str, str]:
    return {
        "db": identifier(database),
        "audit": identifier(AUDIT_TABLE),
        "keys": identifier(KEYS_TABLE),
        "controls": identifier(CONTROLS_TABLE),
        "on_cluster": f" ON CLUSTER {identifier(cluster)}" if cluster else "",
    }
