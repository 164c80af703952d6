"""Grafana's dashboards (deploy/grafana/dashboards): every ClickHouse query runs against the embedded
store's schema and finds what the proxy writes; every Prometheus query names metrics Bastion exports."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bastion import semconv
from bastion.collector import otlp
from bastion.collector.metrics import CollectorMetrics
from bastion.collector.store import Store
from bastion.proxy.metrics import ProxyMetrics
from factories.collector import decision_span, request, span
from support import ROOT

DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
PROVISIONED_SOURCES = {"bastion-clickhouse", "bastion-prometheus"}


def targets(datasource: str) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                if target["datasource"]["uid"] == datasource:
                    found.append((path.name, panel["title"], target))
    return found


def test_every_panel_uses_a_provisioned_data_source() -> None:
    assert {p.name for p in DASHBOARDS} == {"bastion-governance.json", "bastion-operations.json"}
    provisioned = (ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "bastion.yaml").read_text()
    for uid in PROVISIONED_SOURCES:
        assert f"uid: {uid}" in provisioned
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            assert panel["datasource"]["uid"] in PROVISIONED_SOURCES, (path.name, panel["title"])


def as_clickhouse(sql: str, database: str) -> str:
    """The Grafana ClickHouse plugin's macros as plain SQL over the last day, tables in ``database``."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 >= now() - INTERVAL 1 DAY AND \1 <= now() + INTERVAL 1 HOUR", sql)
    sql = re.sub(r"\$__timeInterval\((\w+)\)", r"toStartOfInterval(\1, INTERVAL 60 second)", sql)
    assert "$" not in sql, f"a macro the test does not know: {sql}"
    return re.sub(r"\b(otel_traces|audit_chain)\b", rf"{database}.\1", sql)


@pytest.mark.parametrize(("dashboard", "title", "target"), targets("bastion-clickhouse"))
def test_clickhouse_queries_run_on_the_store_and_find_the_proxys_spans(
    store: Store, dashboard: str, title: str, target: dict[str, Any]
) -> None:
    pii = {
        f"{semconv.BASTION_PII_PREFIX}.request.EMAIL_ADDRESS": 2,
        semconv.GEN_AI_USAGE_OUTPUT_TOKENS: 5,
        semconv.BASTION_COST_USD: 0.0125,
    }
    spans = [
        span(attributes=decision_span("agent-1", "allow", **pii)),
        span(attributes=decision_span("agent-2", "deny")),
    ]
    store.insert_spans(otlp.rows(request(*spans)))  # type: ignore[arg-type]
    rows = store.rows(as_clickhouse(target["rawSql"], store.database), {})
    assert rows, f"{dashboard} / {title}: no rows"
    if "cost" in title:  # the cost column sums the calls' bastion.cost.usd
        assert any(0.0125 in row for row in rows), rows


@pytest.mark.parametrize(("dashboard", "title", "target"), targets("bastion-prometheus"))
def test_prometheus_queries_name_exported_metrics(dashboard: str, title: str, target: dict[str, Any]) -> None:
    families = {m.name for r in (ProxyMetrics().registry, CollectorMetrics().registry) for m in r.collect()}
    families |= {"bastion_proxy_outbox_pending_bytes", "bastion_proxy_outbox_oldest_age_seconds"}
    families |= {"bastion_proxy_outbox_ship_errors", "bastion_proxy_policy_version_info"}  # read when scraped
    exported = {f"{name}{suffix}" for name in families for suffix in ("", "_total", "_bucket", "_count", "_sum")}
    for name in re.findall(r"\bbastion_\w+", target["expr"]):
        assert name in exported, f"{dashboard} / {title}: {name} is not a Bastion metric"


def test_the_test_knows_the_live_metrics() -> None:
    """The names added by hand above are the ones read at scrape time (ProxyMetrics.watch)."""
    source = (ROOT / "src" / "bastion" / "proxy" / "metrics.py").read_text()
    for name in ("outbox_pending_bytes", "outbox_oldest_age_seconds", "outbox_ship_errors", "policy_version_info"):
        assert f'"bastion_proxy_{name}"' in source
