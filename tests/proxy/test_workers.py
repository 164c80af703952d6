"""`bastion proxy --workers 2`: both workers serve on the same ports, each keeps its own verifiable
chain, and a worker SIGKILLed right after answering loses no answered call's record."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from bastion.proxy.master import share_ports
from bastion.proxy.outbox import Outbox
from factories import processes
from support import collector_api, create_key, free_ports

CALLS = 40


def _workers(supervisor: int) -> list[int]:
    """The supervisor's child processes (its workers)."""
    tasks = Path(f"/proc/{supervisor}/task")
    children: list[int] = []
    for task in tasks.iterdir():
        children += [int(pid) for pid in (task / "children").read_text().split()]
    return children


def _wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return
        if "State:\tZ" in status:  # a zombie: its files, sockets included, are closed
            return
        time.sleep(0.05)
    raise AssertionError(f"worker {pid} did not die")


def _call(url: str, key: str, i: int) -> str:
    """A call on a connection of its own (the kernel spreads connections, not requests, over workers),
    retried as the SDKs retry a reset connection: while listeners leave and join the ports, the
    kernel may reset a connection still in its handshake (a call never answered)."""
    trace_id = f"{i + 1:032x}"
    headers = {"authorization": f"Bearer {key}", "traceparent": f"00-{trace_id}-{i + 1:016x}-01"}
    body = {"model": "scripted-small", "messages": [{"role": "user", "content": f"call {i}"}]}
    for attempt in range(3):
        try:
            response = httpx.post(f"{url}/openai/v1/chat/completions", json=body, headers=headers, timeout=30)
            break
        except httpx.TransportError:
            if attempt == 2:
                raise
            time.sleep(0.5)
    assert response.status_code == 200, response.text
    return trace_id


def _stored(collector: str) -> list[dict[str, object]]:
    with collector_api(collector) as api:
        found = api.get("/api/audit", params={"agent": "worker-test", "limit": 500}).json()["items"]
    return list(found)


def test_two_workers_share_the_ports_and_lose_nothing_when_one_is_killed(tmp_path: Path) -> None:
    model_port, collector_port, reverse, explicit = free_ports(4)
    keys = tmp_path / "keys.yaml"
    key = create_key(keys, "worker-test")
    with (
        processes.scripted_model(tmp_path, model_port) as model,
        processes.collector(tmp_path, collector_port) as collector,
    ):
        processes.ready(model, collector)
        env = {**processes.routes_env(model.url, keys, collector.url), "BASTION_PROXY_WORKERS": "2"}
        with processes.proxy(tmp_path, "proxy", (reverse, explicit), env) as proxy:
            processes.ready(proxy)
            outbox = tmp_path / "proxy" / "outbox"
            traces = [_call(proxy.url, key, i) for i in range(CALLS)]
            workers = _workers(proxy.proc.pid)
            assert len(workers) == 2
            os.kill(workers[0], signal.SIGKILL)  # right after answering: its records are on disk
            _wait_dead(workers[0])
            traces += [_call(proxy.url, key, i) for i in range(CALLS, 2 * CALLS)]

            def stored() -> set[str]:
                return {str(i["trace_id"]) for i in _stored(collector.url)}

            deadline = time.monotonic() + 90
            while not set(traces) <= stored() and time.monotonic() < deadline:
                time.sleep(0.5)  # the restarted worker ships what its predecessor left in the outbox
            items = _stored(collector.url)
            # Every answered call is stored (a reset call may have been decided before its connection
            # was reset: stored, though never answered).
            assert set(traces) <= {str(i["trace_id"]) for i in items}
            assert all(i["verified"] for i in items)
            with collector_api(collector.url) as api:
                chain = api.get("/api/audit/chain", params={"limit": 5000}).json()["items"]
            by_instance: dict[str, list[int]] = {}
            for record in chain:
                by_instance.setdefault(record["instance"], []).append(record["seq"])
            # Both workers served, each its own chain, gap-free, the killed one continued after its restart.
            assert len(by_instance) == 2
            assert all(sorted(seqs) == list(range(1, len(seqs) + 1)) for seqs in by_instance.values())
            assert sum(len(s) for s in by_instance.values()) == len(items)
            assert {Outbox(outbox).directory, Outbox(outbox / "worker-2").directory} == {outbox, outbox / "worker-2"}
            assert (outbox / "instance_id").read_text() != (outbox / "worker-2" / "instance_id").read_text()


def test_mitmproxy_still_has_the_listener_workers_wrap() -> None:
    """share_ports wraps a mitmproxy internal: an upgrade that moves it must fail here."""
    from mitmproxy.proxy import mode_servers

    before = mode_servers.AsyncioServerInstance.listen
    share_ports()
    try:
        assert mode_servers.AsyncioServerInstance.listen is not before
    finally:
        mode_servers.AsyncioServerInstance.listen = before  # type: ignore[method-assign]


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_a_bad_worker_count_is_refused_naming_it(value: str) -> None:
    import subprocess

    from support import BASTION, ROOT

    done = subprocess.run([*BASTION, "proxy", "--workers", value], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert "--workers" in done.stderr and value in done.stderr
