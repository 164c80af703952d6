from pathlib import Path

import pytest

from bastion.collector import deploy

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.mark.parametrize(("name", "cluster"), [("server.sql", None), ("cluster.sql", "bastion_cluster")])
def test_the_committed_ddl_is_what_the_code_renders(name: str, cluster: str | None) -> None:
    assert (DEPLOY / name).read_text() == deploy.script("bastion", cluster), f"regenerate deploy/{name}"


def test_a_cluster_puts_replicated_tables_behind_distributed_ones() -> None:
    statements = deploy.statements("obs", "main")
    assert all(" ON CLUSTER `main`" in s for s in statements)
    local = "\n".join(s for s in statements if "ENGINE = Replicated" in s)
    assert "`obs`.`otel_traces_local`" in local and "`obs`.`audit_chain_local`" in local
    assert "`obs`.`audit_keys_local`" in local and "`obs`.`bastion_controls_local`" in local
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')" in local
    distributed = [s for s in statements if "Distributed(" in s]
    assert len(distributed) == 5
    assert "`obs`.`otel_traces` ON CLUSTER `main` AS `obs`.`otel_traces_local`" in distributed[0]
    assert deploy.local_table("otel_traces_trace_id_ts", "main") == "otel_traces_local_trace_id_ts"
    assert deploy.local_table("audit_chain", None) == "audit_chain"
