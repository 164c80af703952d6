"""Attack: a suspended agent waits for the proxy to restart while the collector is down.

The proxy learns suspensions by polling the collector and kept them only in memory: restarted with
the collector unreachable, it knew of no suspension and served the agent with 200. It now keeps the
last known suspensions in its state directory and refuses those agents until the collector says
otherwise.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import support
from factories import processes
from support import BASTION, copy_policies, free_ports

REASON = "exfiltrating customer data"


def last_line(*args: str) -> str:
    return subprocess.run([*BASTION, *args], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]


def wait_until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def chat(proxy: str, key: str) -> httpx.Response:
    body = {"model": "scripted-small", "messages": [{"role": "user", "content": "hello"}]}
    return httpx.post(f"{proxy}/openai/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    copy_policies(target, "tests")
    (target / "keys.yaml").write_text("keys: []\n")
    return target


def test_a_suspended_agent_stays_refused_after_a_proxy_restart_with_the_collector_down(
    tmp_path: Path, policies: Path
) -> None:
    key = last_line("keys", "create", "--agent", "agent-1", "--role", "assistant", "--policies", str(policies))
    model_port, collector_port, *proxy_ports = free_ports(4)
    collector_url = processes.url(collector_port)
    env = {
        "BASTION_POLICIES": str(policies),
        "BASTION_OPENAI_UPSTREAM": processes.url(model_port) + "/",
        "OPENAI_API_KEY": processes.PROVIDER_KEY,
        "BASTION_COLLECTOR_URL": collector_url,
    }
    approver = {**support.cli_env("approver"), "BASTION_COLLECTOR_URL": collector_url}
    with processes.scripted_model(tmp_path, model_port) as model:
        with (
            processes.collector(tmp_path, collector_port, env) as collector,
            processes.proxy(tmp_path, "proxy", proxy_ports, env) as proxy,
        ):
            processes.ready(model, collector, proxy)
            assert chat(proxy.url, key).status_code == 200
            suspend = [*BASTION, "agents", "suspend", "agent-1", "--reason", REASON]
            subprocess.run(suspend, check=True, capture_output=True, env=approver)
            wait_until(lambda: chat(proxy.url, key).status_code == 403)
        # The collector is down now; the proxy restarts with the same state directory.
        with processes.proxy(tmp_path, "proxy", proxy_ports, env) as proxy:
            processes.ready(proxy)
            refused = chat(proxy.url, key)
    assert refused.status_code == 403, refused.text
    assert refused.headers["x-bastion-error"] == "agent_suspended"
    assert REASON in refused.json()["error"]["message"]
