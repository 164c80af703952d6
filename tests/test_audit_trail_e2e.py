"""End to end: nothing is lost or stored twice when the collector is SIGKILLed mid-run or the
proxy is SIGKILLed right after answering, and `bastion audit verify` catches each kind of tampering."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.operators import Role
from factories import processes
from support import (
    BASTION,
    CREDENTIALS_ENV,
    ROOT,
    TOKENS,
    cli_env,
    collector_api,
    create_key,
    free_port,
    free_ports,
    refuse_live_policies,
    stop,
    wait_for_http,
)

CALLS = 200


@dataclass
class Trail:
    collector_url: str
    data_dir: Path
    outbox: Path
    trace_ids: list[str]
    collector: subprocess.Popen[bytes]


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    refuse_live_policies(args, env)
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, env={**env, **CREDENTIALS_ENV}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def eventually(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trail]:
    import os

    tmp = tmp_path_factory.mktemp("trail")
    model_port, proxy_port, explicit_port, collector_port = free_ports(4)
    model, collector = f"http://127.0.0.1:{model_port}", f"http://127.0.0.1:{collector_port}"
    keys = tmp / "keys.yaml"
    key = create_key(keys, "auditee")
    env = {
        **os.environ,
        **CREDENTIALS_ENV,
        "BASTION_OPENAI_UPSTREAM": model + "/",
        "OPENAI_API_KEY": "provider-key",
        "BASTION_KEYS_FILE": str(keys),
        "BASTION_CONFDIR": str(tmp / "conf"),
        "BASTION_OUTBOX_DIR": str(tmp / "outbox"),
        "BASTION_AUDIT_HEAD_INTERVAL": "0.5",
        "BASTION_COLLECTOR_URL": collector,
    }
    collector_args = [*BASTION, "collector", "--collector-port", str(collector_port), "--data-dir", str(tmp / "data")]
    proxy_args = [*BASTION, "proxy", "--proxy-port", str(proxy_port), "--explicit-port", str(explicit_port)]
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    trace_ids = [f"{i + 1:032x}" for i in range(CALLS)]
    with processes.scripted_model(tmp, model_port) as scripted:
        processes.ready(scripted)
        coll = start(collector_args, env, tmp / "collector.log")
        wait_for_http(f"{collector}/healthz", proc=coll)
        proxy = start(proxy_args, env, tmp / "proxy.log")
        wait_for_http(f"{proxy_url}/healthz", proc=proxy, timeout=60)
        try:
            with httpx.Client(timeout=30) as client:
                for i, trace_id in enumerate(trace_ids):
                    if i == 50:
                        coll.kill()  # SIGKILL mid-run: the proxy keeps serving, spans wait in the outbox
                        coll.wait()
                    if i == 100:
                        coll = start(collector_args, env, tmp / "collector.log")
                        wait_for_http(f"{collector}/healthz", proc=coll)
                    if i == 150:
                        proxy.kill()  # SIGKILL right after the last response
                        proxy.wait()
                        proxy = start(proxy_args, env, tmp / "proxy.log")
                        wait_for_http(f"{proxy_url}/healthz", proc=proxy, timeout=60)
                    response = client.post(
                        f"{proxy_url}/openai/v1/chat/completions",
                        json={"model": "scripted-small", "messages": [{"role": "user", "content": f"call {i}"}]},
                        headers={"authorization": f"Bearer {key}", "traceparent": f"00-{trace_id}-{i + 1:016x}-01"},
                    )
                    assert response.status_code == 200, response.text

            def audited() -> bool:
                with collector_api(collector) as api:
                    items = api.get("/api/audit", params={"agent": "auditee", "limit": 500}).json()["items"]
                return len(items) >= CALLS

            eventually(audited, 60)
            stop(proxy)  # graceful: records the final chain head and ships it
            time.sleep(0.5)
            yield Trail(collector, tmp / "data", tmp / "outbox", trace_ids, coll)
        finally:
            stop(proxy)
            stop(coll)


def test_every_call_is_stored_exactly_once_across_kills(trail: Trail) -> None:
    with collector_api(trail.collector_url) as api:
        items = api.get("/api/audit", params={"agent": "auditee", "limit": 500}).json()["items"]
        stats = api.get("/api/spans/stats").json()
        chain = api.get("/api/audit/chain", params={"limit": 5000}).json()["items"]
        keys = api.get("/api/audit/keys").json()["items"]
    assert sorted(i["trace_id"] for i in items) == sorted(trail.trace_ids)
    assert all(i["verified"] for i in items)  # every row matches its signed record, across both kills
    assert stats["duplicates"] == [] and stats["spans"] == stats["distinct"]
    assert len(keys) == 1  # the restarted proxy kept its key
    assert len({r["instance"] for r in chain}) == 1  # the restarted proxy continued its chain
    assert [r["seq"] for r in chain] == list(range(1, CALLS + 1))
    assert not list(trail.outbox.glob("*.seg"))[1:]  # acknowledged segments were pruned


# The CLI reads the auditor's operator token from BASTION_TOKEN.
VIEWER_ENV = {**os.environ, "BASTION_TOKEN": TOKENS[Role.VIEWER]}


def verify(collector_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BASTION, "audit", "verify", "--collector-url", collector_url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=cli_env(),
    )


def test_an_untouched_trail_verifies_and_exports(trail: Trail, tmp_path: Path) -> None:
    done = verify(trail.collector_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"OK: {CALLS} records in 1 chains" in done.stdout
    assert f"{CALLS} decision spans in the audit view match their signed records" in done.stdout
    for fmt in ("jsonl", "parquet"):
        out = tmp_path / f"audit.{fmt}"
        subprocess.run(
            [*BASTION, "audit", "export", "--format", fmt, "--out", str(out), "--collector-url", trail.collector_url],
            check=True,
            cwd=ROOT,
            env=cli_env(),
        )
        offline = subprocess.run(
            [*BASTION, "audit", "verify", "--file", str(out)], capture_output=True, text=True, cwd=ROOT, env=cli_env()
        )
        assert f"OK: {CALLS} records in 1 chains" in offline.stdout, offline.stdout + offline.stderr
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [line["type"] for line in lines].count("record") == CALLS
    # an anchor too if the collector had acknowledged a record before the proxy's SIGKILL (verify checks it)
    assert {"export", "key", "head", "record"} <= {line["type"] for line in lines}
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    table = pq.read_table(tmp_path / "audit.parquet")
    assert table.num_rows == CALLS and {"hash", "signature", "view_hash"} <= set(table.column_names)


@pytest.mark.parametrize(
    ("kind", "seq", "expected"),
    [
        ("edit", 77, "record seq 77: its content does not match its hash"),
        ("delete", 77, "record seq 77: missing"),
        ("insert", 77, "record seq 77: 2 different records claim this position"),
        ("reorder", 77, "record seq 77: its content does not match its hash"),
        ("truncate", 191, "record seq 191: missing: a signed chain head says the chain reaches seq 200"),
    ],
)
def test_verify_names_the_first_broken_link(trail: Trail, tmp_path: Path, kind: str, seq: int, expected: str) -> None:
    stop(trail.collector)  # only a stopped collector lets go of the store; later cases find it stopped
    data = tmp_path / "data"
    shutil.copytree(trail.data_dir, data, symlinks=True)  # chDB links tables into store/ relatively
    tamper = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "audit_tamper.py"), str(data), kind, str(seq)],
        capture_output=True,
        text=True,
    )
    assert tamper.returncode == 0, tamper.stderr
    with processes.collector(tmp_path, free_port()) as collector:  # on the copy, tmp_path / "data"
        processes.ready(collector)
        done = verify(collector.url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert expected in done.stdout
