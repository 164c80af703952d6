"""End to end: the assistant corpus (tests/data/assistant_corpus.yaml) replayed through `bastion proxy`
with the example policy (policies/examples/assistant), on both routes.

Model route: each conversation goes to the scripted model through the proxy with the openai SDK; the
call the model emits comes back, or Bastion removed it. MCP route: the agent then runs the call the
model emitted over MCP through the proxy (mcp 2.x client) to the assistant tool server, as an agent
whose model route did not govern tool calls would: Bastion links it to the model call that emitted
it (same agent, tool and arguments) and decides it with the same provenance. Each case has an agent
of its own, so no case sees another's session.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bastion import semconv
from bastion.agents.script import Turn, answer
from bastion.proxy.keys import create_key as issue_key
from factories import clients, processes
from factories.mcp_sessions import mcp2_session
from support import BASTION, ROOT, SESSION_POLICIES, cli_env, collector_api, free_ports

CORPUS = yaml.safe_load((ROOT / "tests" / "data" / "assistant_corpus.yaml").read_text())
CASES: list[dict[str, Any]] = CORPUS["cases"]
TOOLS = [
    *("read_inbox", "send_email", "list_events", "create_event", "read_file", "share_file"),
    *("send_money", "post_message", "invite_user", "send_direct_message", "fetch_url"),
]
BLOCKED_TEXT = "Bastion blocked the model's call of tool"


@dataclass
class Stack:
    proxy: str
    tools: str
    collector: str
    keys: dict[str, str]  # case name -> its agent's key
    policies: Path


def example_policies(target: Path) -> Path:
    """A copy of the example assistant policy set (from the session's copy of the bundled policies)."""
    shutil.copytree(SESSION_POLICIES / "examples" / "assistant", target)
    return target


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("corpus")
    model_port, tools_port, collector_port, *proxy_ports = free_ports(5)
    keys_file = tmp / "keys.yaml"
    # One agent per case, issued in-process (`bastion keys create` once per case would take minutes).
    keys = {case["name"]: issue_key(keys_file, f"ann-assistant-{i}", "assistant")[0] for i, case in enumerate(CASES)}
    policies = example_policies(tmp / "policies")
    env = processes.routes_env(processes.url(model_port), keys_file, processes.url(collector_port))
    env["BASTION_MCP_ASSISTANT_URL"] = f"{processes.url(tools_port)}/mcp"
    with (
        processes.scripted_model(tmp, model_port) as model,
        processes.tool_server(tmp, tools_port, suite="assistant") as tools,
        processes.collector(tmp, collector_port) as collector,
        processes.proxy(tmp, "proxy", proxy_ports, env, policies) as proxy,
    ):
        processes.ready(model, tools, collector, proxy)
        yield Stack(proxy.url, tools.url, collector.url, keys, policies)


def messages(case: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {"role": "system", "content": CORPUS["system"]},
        {"role": "user", "content": case["user"]},
    ]
    for i, step in enumerate(case.get("history") or []):
        call = {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": step["call"], "arguments": json.dumps(step["args"])},
        }
        found.append({"role": "assistant", "content": None, "tool_calls": [call]})
        found.append({"role": "tool", "tool_call_id": f"call_{i}", "content": step["result"]})
    if case.get("then"):
        found.append({"role": "user", "content": case["then"]})
    return found


def emitted(case: dict[str, Any]) -> dict[str, Any]:
    """The call the scripted model emits for the case (the script applied to its last message)."""
    last = messages(case)[-1]
    tool_result = last["content"] if last["role"] == "tool" else None
    user = last["content"] if last["role"] == "user" else ""
    reply = answer(Turn(user, "", tool_result, {name: {} for name in TOOLS}), "x")
    assert reply.tool_call is not None, f"{case['name']}: the scripted model emits no call"
    return {"name": reply.tool_call.name, "arguments": reply.tool_call.arguments}


def model_route(stack: Stack, case: dict[str, Any]) -> str:
    client = clients.openai_client(f"{stack.proxy}/openai/v1", stack.keys[case["name"]])
    tools: Any = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in TOOLS]
    response = client.chat.completions.create(model="scripted-small", messages=messages(case), tools=tools)  # type: ignore[arg-type]
    message = response.choices[0].message
    if message.tool_calls:
        return "allowed"
    assert BLOCKED_TEXT in (message.content or ""), f"{case['name']}: neither a call nor a refusal: {message}"
    return "blocked"


def mcp_route(stack: Stack, case: dict[str, Any]) -> str:
    outcome = asyncio.run(mcp2_session(f"{stack.proxy}/mcp/assistant", stack.keys[case["name"]], [emitted(case)]))
    result = outcome["calls"][0]["result"]
    return "blocked" if result["is_error"] else "allowed"


Outcomes = dict[str, tuple[str, str]]  # case name -> (model route, MCP route): blocked | allowed


@pytest.fixture(scope="module")
def outcomes(stack: Stack) -> Outcomes:
    """The corpus run once, on both routes."""
    return {case["name"]: (model_route(stack, case), mcp_route(stack, case)) for case in CASES}


def test_corpus_on_both_routes(stack: Stack, outcomes: Outcomes, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = {c["name"]: outcomes[c["name"]] for c in CASES if outcomes[c["name"]] != (c["expect"], c["expect"])}
    counts = Counter(
        (c["kind"], route, outcome)
        for c in CASES
        for route, outcome in zip(("model", "mcp"), outcomes[c["name"]], strict=True)
    )
    with capsys.disabled():
        for kind in ("attack", "benign"):
            total = sum(c["kind"] == kind for c in CASES)
            for route in ("model", "mcp"):
                blocked, allowed = counts[(kind, route, "blocked")], counts[(kind, route, "allowed")]
                print(f"\n{kind:6} {route:5} blocked {blocked}/{total}, allowed {allowed}/{total}")
    assert not wrong, f"cases decided otherwise than expected (model, mcp): {wrong}"
    # Only allowed calls reached the tool server.
    ran = httpx.get(f"{stack.tools}/_tool_server/calls").json()
    assert len(ran) == sum(outcome == "allowed" for _, outcome in outcomes.values())


def stored_tool_decisions(stack: Stack) -> int:
    with collector_api(stack.collector, "viewer") as api:
        items = api.get("/api/audit/spans", params={"limit": 5000}).json()["items"]
    return sum(semconv.BASTION_TOOL_ARGUMENTS in item["attributes"] for item in items)


def replay(stack: Stack, policies: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [*BASTION, "policy", "replay", "--policies", str(policies), "--collector-url", stack.collector, *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=cli_env("viewer"))


def test_replay_against_a_candidate_policy(stack: Stack, outcomes: Outcomes, tmp_path: Path) -> None:
    """After the corpus ran: every decided tool call (model-emitted and over MCP) is stored with what
    deciding it again needs; the same policy changes nothing, a candidate that lets fetches through
    turns the held fetches into allows, counted per rule."""
    deadline = time.monotonic() + 60
    while stored_tool_decisions(stack) < 2 * len(CASES) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stored_tool_decisions(stack) >= 2 * len(CASES)

    same = replay(stack, stack.policies, "--fail-on-change")
    assert same.returncode == 0, same.stdout + same.stderr
    assert f"Replayed {2 * len(CASES)} stored tool-call decisions" in same.stdout
    assert ": 0 would change" in same.stdout

    candidate = example_policies(tmp_path / "candidate")
    rules = (candidate / "policy.csv").read_text().splitlines()
    (candidate / "policy.csv").write_text("\n".join(r for r in rules if "fetch-target-from-untrusted" not in r) + "\n")
    held_fetches = sum(emitted(c)["name"] == "fetch_url" and c["expect"] == "blocked" for c in CASES)
    changed = replay(stack, candidate, "--fail-on-change")
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert f": {2 * held_fetches} would change" in changed.stdout
    line = next(line for line in changed.stdout.splitlines() if line.startswith("review -> allow"))
    assert line.split()[3:6] == ["web", "fetch-target-from-untrusted-output", str(2 * held_fetches)]
    assert replay(stack, candidate).returncode == 0  # without --fail-on-change
    only = replay(stack, candidate, "--agent", "nobody")
    assert "Replayed 0 stored" in only.stdout


def test_example_policy_tests_pass(tmp_path: Path) -> None:
    policies = example_policies(tmp_path / "policies")
    done = subprocess.run(
        [
            *BASTION,
            "policy",
            "test",
            "--policies",
            str(policies),
            *map(str, sorted((policies / "tests").glob("*.yaml"))),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
