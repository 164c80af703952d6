"""Attacks on the audit trail by someone who can write the collector's store (or an export) but
does not hold a proxy's private key. Real processes: scripted model, collector, proxy, the CLI.

Each attack tampers with a copy of the stopped collector's data directory (one process owns a
chDB path), starts a collector on the copy and runs ``bastion audit verify`` against it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from factories import processes
from factories.proxy import policies_dir
from support import BASTION, ROOT, cli_env, collector_api, create_key, free_port, free_ports, stop

CALLS = 12
SEQ = 5  # the record each attack goes for


@dataclass
class Trail:
    tmp: Path
    env: dict[str, str]
    policies: Path
    key: str
    collector: processes.Service


def chat(proxy_url: str, key: str, calls: int) -> None:
    with httpx.Client(timeout=30) as client:
        for i in range(calls):
            response = client.post(
                f"{proxy_url}/openai/v1/chat/completions",
                json={"model": "scripted-small", "messages": [{"role": "user", "content": f"call {i}"}]},
                headers={"authorization": f"Bearer {key}"},
            )
            assert response.status_code == 200, response.text


def eventually(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the collector did not store the trail in time"
        time.sleep(0.3)


def stored(collector_url: str, last_seq: int) -> Callable[[], bool]:
    """Whether the chain reaches ``last_seq`` and a head records it (the proxy shipped its tail)."""

    def check() -> bool:
        with collector_api(collector_url) as api:
            heads = api.get("/api/audit/chain", params={"type": "head"}).json()["items"]
        return any(h["seq"] == last_seq for h in heads)

    return check


def run_proxy(trail: Trail, collector_url: str, calls: int) -> None:
    """The proxy (always the same outbox) makes ``calls`` governed calls and stops gracefully."""
    ports = free_ports(2)
    env = {**trail.env, "BASTION_COLLECTOR_URL": collector_url}
    with processes.proxy(trail.tmp, "proxy", ports, env, trail.policies) as proxy:
        processes.ready(proxy)
        chat(proxy.url, trail.key, calls)


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trail]:
    tmp = tmp_path_factory.mktemp("forgery")
    policies = policies_dir(tmp)
    key = create_key(policies / "keys.yaml", "auditee")
    model_port, collector_port = free_ports(2)
    env = {
        **processes.routes_env(processes.url(model_port), policies / "keys.yaml", ""),
        "BASTION_AUDIT_HEAD_INTERVAL": "0.5",
    }
    with processes.scripted_model(tmp, model_port) as model, processes.collector(tmp, collector_port) as collector:
        processes.ready(model, collector)
        trail = Trail(tmp, env, policies, key, collector)
        run_proxy(trail, collector.url, CALLS)
        eventually(stored(collector.url, CALLS))
        yield trail


@contextmanager
def tampered(trail: Trail, tmp_path: Path, kind: str | None, seq: int = SEQ) -> Iterator[processes.Service]:
    """A collector on a copy of the trail's store, tampered with by ``kind`` at ``seq``."""
    stop(trail.collector.proc)  # it lets go of the store; later attacks find it stopped
    shutil.copytree(trail.tmp / "data", tmp_path / "data", symlinks=True)
    if kind is not None:
        attack(tmp_path / "data", kind, seq)
    with processes.collector(tmp_path, free_port()) as collector:
        processes.ready(collector)
        yield collector


def attack(data_dir: Path, kind: str, seq: int) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "audit_tamper.py"), str(data_dir), kind, str(seq)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BASTION, "audit", "verify", *args], capture_output=True, text=True, cwd=ROOT, env=cli_env())


def first_broken(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    return next(line for line in done.stdout.splitlines() if line.startswith("BROKEN:"))


def test_rewriting_a_decision_and_rehashing_the_chain_is_reported(trail: Trail, tmp_path: Path) -> None:
    with tampered(trail, tmp_path, "rehash") as collector:
        done = verify("--collector-url", collector.url)
    assert f"record seq {SEQ}: its signature is not valid" in first_broken(done)


def test_changing_only_the_span_the_audit_view_shows_is_reported_and_flagged(trail: Trail, tmp_path: Path) -> None:
    with tampered(trail, tmp_path, "view") as collector:
        done = verify("--collector-url", collector.url)
        with collector_api(collector.url) as api:
            items = api.get("/api/audit", params={"limit": 100}).json()["items"]
    (edited,) = [i for i in items if i["decision"] == "deny"]
    assert f"UNVERIFIED: decision span trace {edited['trace_id']}" in done.stdout and done.returncode == 1
    assert "differs from its signed record in decision" in done.stdout
    assert edited["verified"] is False and "decision" in edited["unverified_reason"]
    assert [i["verified"] for i in items if i is not edited] == [True] * (CALLS - 1)


def test_a_forged_record_at_a_real_position_is_the_break_reported(trail: Trail, tmp_path: Path) -> None:
    with tampered(trail, tmp_path, "forge") as collector:
        done = verify("--collector-url", collector.url)
    assert f"record seq {SEQ}: its signature is not valid" in first_broken(done)  # not seq 6, which links to it


def test_an_export_verifies_offline_and_tampering_with_it_is_reported(trail: Trail, tmp_path: Path) -> None:
    export = tmp_path / "trail.jsonl"
    with tampered(trail, tmp_path, None) as collector:
        subprocess.run(
            [*BASTION, "audit", "export", "--out", str(export), "--collector-url", collector.url],
            check=True,
            cwd=ROOT,
            env=cli_env(),
        )
    offline = verify("--file", str(export))  # no collector runs now
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert f"OK: {CALLS} records in 1 chains" in offline.stdout

    def rewritten(change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Path:
        out = tmp_path / "tampered.jsonl"
        lines = [json.loads(line) for line in export.read_text().splitlines()]
        kept = [line if line.get("seq") != SEQ or line["type"] != "record" else change(line) for line in lines]
        out.write_text("".join(json.dumps(line) + "\n" for line in kept if line is not None))
        return out

    def rehashed(record: dict[str, Any]) -> dict[str, Any]:
        from bastion.audit_chain import record_hash

        record = {**record, "decision": "deny"}
        return {**record, "hash": record_hash(record)}

    assert f"record seq {SEQ}: its signature is not valid" in first_broken(verify("--file", str(rewritten(rehashed))))
    assert f"record seq {SEQ}: missing" in first_broken(verify("--file", str(rewritten(lambda r: None))))


def test_a_new_store_begins_at_the_anchor_and_a_record_deleted_in_it_is_reported(trail: Trail, tmp_path: Path) -> None:
    stop(trail.collector.proc)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with processes.collector(fresh, free_port()) as collector:  # a new data directory, the same outbox
        processes.ready(collector)
        run_proxy(trail, collector.url, 3)
        eventually(stored(collector.url, CALLS + 3))
        done = verify("--collector-url", collector.url)
    assert done.returncode == 0, done.stdout + done.stderr
    # the anchor is what the first store acknowledged: CALLS, unless the stop left some to re-ship
    anchor = int(re.search(r"after its signed anchor at seq (\d+)", done.stdout).group(1))  # type: ignore[union-attr]
    assert 1 <= anchor <= CALLS and f"OK: {CALLS + 3 - anchor} records in 1 chains" in done.stdout
    shutil.copytree(fresh / "data", tmp_path / "data", symlinks=True)
    attack(tmp_path / "data", "delete", CALLS + 2)
    with processes.collector(tmp_path, free_port()) as collector:
        processes.ready(collector)
        done = verify("--collector-url", collector.url)
    assert f"record seq {CALLS + 2}: missing" in first_broken(done)


def test_a_key_replaced_in_the_store_to_re_sign_the_trail_is_caught_by_pinned_keys(
    trail: Trail, tmp_path: Path
) -> None:
    pinned = tmp_path / "earlier.jsonl"  # an export an auditor took before the attack
    with tampered(trail, tmp_path / "clean", None) as collector:
        subprocess.run(
            [*BASTION, "audit", "export", "--out", str(pinned), "--collector-url", collector.url],
            check=True,
            cwd=ROOT,
            env=cli_env(),
        )
    with tampered(trail, tmp_path, "resign") as collector:
        unpinned = verify("--collector-url", collector.url)
        done = verify("--collector-url", collector.url, "--keys", str(pinned))
    assert unpinned.returncode == 0 and "trusted on first use" in unpinned.stdout  # it says what its OK rests on
    assert "the collector's public key for it is not the trusted one" in first_broken(done)
    assert "record seq 1: its signature is not valid" in done.stdout
