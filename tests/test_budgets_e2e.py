"""End to end: budgets hold across two proxy replicas sharing one collector, an operator raises one, and a
replica cut off from the collector stops within its local allowance.

Real processes (the scripted model, one collector, proxies) and the openai SDK as the agent. The
scripted model counts words as tokens: "hello there" costs 2 input and 5 output tokens, $0.07 at
the test's price of $10,000 per million tokens.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai

from bastion.proxy import budget_guard
from factories import clients, processes
from support import BASTION, cli_env, copy_policies, free_ports

CALL_USD = 0.07
PRICES = """
prices:
  scripted-small: {input: 10000, output: 10000}
"""


def policies(tmp_path: Path, budgets: str) -> Path:
    target = copy_policies(tmp_path / "policies", "tests")
    (target / "keys.yaml").write_text("keys: []\n")
    with (target / "bastion.yaml").open("a") as f:
        f.write(PRICES + budgets)
    return target


def create_key(policies_dir: Path, agent: str) -> str:
    args = [*BASTION, "keys", "create", "--agent", agent, "--role", "assistant", "--policies", str(policies_dir)]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]


def chat(proxy: str, key: str) -> openai.types.chat.ChatCompletion:
    client = clients.openai_client(f"{proxy}/openai/v1", key)
    return client.chat.completions.create(model="scripted-small", messages=[{"role": "user", "content": "hello there"}])


def refusal(proxy: str, key: str) -> openai.RateLimitError | None:
    """The 429 the call got, or None when it went through."""
    try:
        chat(proxy, key)
    except openai.RateLimitError as e:
        return e
    return None


def wait_until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def code(error: openai.RateLimitError | None) -> str | None:
    return None if error is None else error.response.headers.get("x-bastion-error")


def test_a_budget_reached_through_one_replica_is_refused_by_both_until_an_admin_raises_it(tmp_path: Path) -> None:
    budgets = """
budgets:
  agents-daily: {per: agent, period: day, usd: 0.2, local_allowance: 0.2}
"""
    policies_dir = policies(tmp_path, budgets)
    key, other_key = create_key(policies_dir, "agent-1"), create_key(policies_dir, "agent-2")
    model_port, collector_port, *ports = free_ports(6)
    collector_url = processes.url(collector_port)
    env = {**processes.routes_env(processes.url(model_port), policies_dir / "keys.yaml", collector_url)}
    env["BASTION_POLICIES"] = str(policies_dir)
    operator = {**cli_env("admin"), "BASTION_COLLECTOR_URL": collector_url, "BASTION_POLICIES": str(policies_dir)}
    with (
        processes.scripted_model(tmp_path, model_port) as model,
        processes.collector(tmp_path, collector_port, env) as collector,
        processes.proxy(tmp_path, "proxy-a", ports[:2], env) as a,
        processes.proxy(tmp_path, "proxy-b", ports[2:], env) as b,
    ):
        processes.ready(model, collector, a, b)
        # Spend through replica A until it refuses: $0.07 a call, $0.2 a day.
        spent = 0.0
        while (error := refusal(a.url, key)) is None:
            spent += CALL_USD
            assert spent < 1.0, "replica A never refused"
        assert code(error) == "budget_exceeded", error
        assert error.response.headers["x-should-retry"] == "false"
        assert int(error.response.headers["retry-after"]) > 0
        assert "budget agents-daily is spent for agent agent-1" in error.message
        # Replica B spent nothing itself: it refuses from the collector's view.
        wait_until(lambda: code(refusal(b.url, key)) == "budget_exceeded")
        # Another agent has its own budget; its streamed call is counted although it did not ask for usage.
        streamed = clients.openai_client(f"{b.url}/openai/v1", other_key).chat.completions.create(
            model="scripted-small", messages=[{"role": "user", "content": "hello there"}], stream=True
        )
        chunks = list(streamed)
        assert chunks and all(c.choices for c in chunks)  # no usage-only chunk it did not ask for

        def spend() -> dict[str, Any]:
            args = [*BASTION, "spend", "--by", "agent", "--json"]
            rows = json.loads(subprocess.run(args, check=True, capture_output=True, text=True, env=operator).stdout)
            return {row["agent"]: row for row in rows}

        wait_until(lambda: "agent-2" in spend())
        assert (spend()["agent-2"]["input_tokens"], spend()["agent-2"]["output_tokens"]) == (2, 5)
        assert spend()["agent-1"]["cost_usd"] >= 0.2
        table = subprocess.run([*BASTION, "spend"], check=True, capture_output=True, text=True, env=operator).stdout
        assert "agent-1" in table and "cost (USD)" in table
        raise_budget = [*BASTION, "budgets", "raise", "agents-daily", "agent-1", "--by", "1", "--reason", "demo day"]
        shown = subprocess.run(raise_budget, check=True, capture_output=True, text=True, env=operator).stdout
        assert "Budget agents-daily for agent-1" in shown
        wait_until(lambda: refusal(a.url, key) is None and refusal(b.url, key) is None)

        listing = subprocess.run(
            [*BASTION, "budgets", "list"], check=True, capture_output=True, text=True, env=operator
        ).stdout
        assert "agents-daily" in listing and "(raised)" in listing


def test_a_replica_cut_off_from_the_collector_spends_at_most_its_allowance(tmp_path: Path) -> None:
    budgets = """
budgets:
  agents-daily: {per: agent, period: day, usd: 10, local_allowance: 0.15}
"""
    policies_dir = policies(tmp_path, budgets)
    key = create_key(policies_dir, "agent-1")
    model_port, collector_port, *ports = free_ports(4)
    collector_url = processes.url(collector_port)
    env = {**processes.routes_env(processes.url(model_port), policies_dir / "keys.yaml", collector_url)}
    env["BASTION_POLICIES"] = str(policies_dir)
    with processes.scripted_model(tmp_path, model_port) as model, processes.proxy(tmp_path, "proxy", ports, env) as p:
        with processes.collector(tmp_path, collector_port, env) as collector:
            processes.ready(model, collector, p)
            assert refusal(p.url, key) is None
        # The collector is stopped: the proxy goes on within its allowance, then refuses.
        spent_offline = 0.0
        while (error := refusal(p.url, key)) is None:
            spent_offline += CALL_USD
            assert spent_offline < 1.0, "the proxy never refused"
        assert code(error) == budget_guard.UNCONFIRMED_CODE
        assert "without the collector confirming it" in error.message
    # Restarted with the collector still down, the proxy remembers what it spent (budgets.json).
    with processes.proxy(tmp_path, "proxy", ports, env) as p:
        processes.ready(p)
        assert code(refusal(p.url, key)) == budget_guard.UNCONFIRMED_CODE
    # The bound docs/budgets.md states: the allowance plus the calls in flight (here one at a time).
    assert spent_offline <= 0.15 + CALL_USD
    assert spent_offline >= CALL_USD  # it did not stop at once: the allowance is there to be used
