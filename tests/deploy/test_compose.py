"""deploy/compose, deploy/prometheus and deploy/otel: valid against the Compose specification
(check-jsonschema's vendored schema, nothing downloaded), and consistent with Bastion and each other."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from support import LIVE_POLICIES, ROOT

COMPOSE = ROOT / "deploy" / "compose"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    return loaded


def test_compose_file_is_valid_against_the_compose_specification(tmp_path: Path) -> None:
    checker = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    done = subprocess.run([*checker, str(COMPOSE / "compose.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    wrong = tmp_path / "compose.yaml"  # the checker does refuse what the specification does not allow
    wrong.write_text("services:\n  proxy:\n    image: bastion\n    restart_policy: always\n")
    assert subprocess.run([*checker, str(wrong)], capture_output=True).returncode == 1


def test_compose_runs_every_part_with_secrets_from_env_files_only() -> None:
    services = compose()["services"]
    assert {"clickhouse", "collector", "proxy-1", "proxy-2", "loadbalancer", "dashboard", "grafana"} <= set(services)
    for name in ("collector", "proxy-1", "proxy-2", "dashboard"):
        command = services[name]["command"]
        assert command[0] in ("collector", "proxy", "dashboard")
    for name, service in services.items():
        for env_file in service.get("env_file", []):
            example = COMPOSE / f"{env_file}.example"
            assert example.exists(), f"{name}: {env_file} has no {example.name}"
        for key in service.get("environment") or {}:
            assert not re.search(r"PASSWORD|TOKEN|KEY|SECRET", key), f"{name}: {key} belongs in an env file"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                path = (COMPOSE / source).resolve()
                # The operators' policies folder is theirs (`bastion init` creates it); secrets too.
                made_by_operators = path == LIVE_POLICIES or path.parent.name == "secrets"
                assert path.exists() or made_by_operators, f"{name}: {source} does not exist"
    # Each replica has its own outbox; both share the CA agents trust.
    outboxes = [v for p in ("proxy-1", "proxy-2") for v in services[p]["volumes"] if v.endswith("/outbox")]
    assert len(set(outboxes)) == 2
    assert (COMPOSE / ".gitignore").read_text().splitlines()[0] == "*.env"


def test_env_examples_set_only_real_settings() -> None:
    source = "".join(p.read_text() for p in (ROOT / "src" / "bastion").rglob("*.py"))
    for example in COMPOSE.glob("*.env.example"):
        for line in example.read_text().splitlines():
            name = line.split("=", 1)[0]
            if name.startswith("BASTION_"):
                assert f'"{name}"' in source, f"{example.name}: {name} is not a Bastion setting"


def test_load_balancer_and_prometheus_reach_every_replica() -> None:
    replicas = {name for name in compose()["services"] if name.startswith("proxy-")}
    haproxy = (COMPOSE / "haproxy.cfg").read_text()
    for replica in replicas:
        assert f"server {replica} {replica}:8080 check" in haproxy and f"{replica}:8081" in haproxy
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert {f"{r}:9464" for r in replicas} | {"collector:4318"} == targets


def test_otel_collector_writes_the_table_bastion_creates() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "otel" / "collector.yaml").read_text())
    exporter = config["exporters"]["clickhouse"]
    assert exporter["traces_table_name"] == "otel_traces" and exporter["create_schema"] is False
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["clickhouse"]
    text = (ROOT / "deploy" / "otel" / "collector.yaml").read_text()
    for still_bastion in ("audit chain", "approvals", "agent controls", "credential"):
        assert still_bastion in text
