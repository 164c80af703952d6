import pytest

from bastion.collector import schema
from bastion.collector.schema import SpanRow


def test_the_row_type_follows_the_insert_columns() -> None:
    assert len(SpanRow._fields) == len(schema.INSERT_COLUMNS)


def test_statements_render_server_and_cluster_variants() -> None:
    engine = "ReplicatedMergeTree('/clickhouse/tables/{shard}/otel_traces', '{replica}')"
    database, traces, lookup, view = schema.statements("obs", engine=engine, cluster="main")
    assert database == "CREATE DATABASE IF NOT EXISTS `obs` ON CLUSTER `main`"
    assert "CREATE TABLE IF NOT EXISTS `obs`.`otel_traces` ON CLUSTER `main` (" in traces
    assert f"ENGINE = {engine}" in traces
    assert "ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/otel_traces'" in lookup
    assert "TO `obs`.`otel_traces_trace_id_ts`" in view and "FROM `obs`.`otel_traces`" in view


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "x`; DROP TABLE t; --", "a.b"])
def test_names_that_are_not_plain_identifiers_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not valid"):
        schema.statements(name)
