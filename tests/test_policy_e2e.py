"""Policies in a running proxy: hot reload, rejected edits, HTTP tool calls, and the policy CLI."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from factories import processes
from factories.mcp_sessions import mcp2_session
from support import AUTH, BASTION, ROOT, SESSION_POLICIES, copy_policies, create_key, free_ports

# The scripted model on its loopback port: the rule names both (http:127.0.0.1/... would mean port 80 or 443).
LOCAL_TOOL_RULE = "p, role:assistant, http:127.0.0.1:{port}/v1/models, GET, allow, local-model-list,\n"


@dataclass
class Proxy:
    url: str
    explicit: str
    collector: str
    model: str
    key: str
    policies: Path

    def chat(self) -> str:
        return ask(self, "scripted-small")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp("policy")
    policies = tmp / "policies"
    copy_policies(policies)
    model_port, proxy_port, explicit_port, collector_port = free_ports(4)
    with (policies / "policy.csv").open("a") as f:
        f.write(LOCAL_TOOL_RULE.format(port=model_port))
    key = create_key(policies / "keys.yaml")
    env = {"BASTION_OPENAI_UPSTREAM": processes.url(model_port) + "/", "OPENAI_API_KEY": "provider-key"}
    flags = ["--collector-url", processes.url(collector_port)]
    with (
        processes.scripted_model(tmp, model_port) as model,
        processes.collector(tmp, collector_port) as collector,
        processes.proxy(tmp, "proxy", (proxy_port, explicit_port), env, policies, flags) as gateway,
    ):
        processes.ready(model, collector, gateway)
        yield Proxy(gateway.url, processes.url(explicit_port), collector.url, model.url, key, policies)


def eventually(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_http_tool_calls_are_decided_on_method_host_and_path(proxy: Proxy) -> None:
    tool = httpx.Client(proxy=proxy.explicit.replace("http://", f"http://agent-1:{proxy.key}@"))
    with tool:
        assert tool.get(f"{proxy.model}/v1/models").status_code == 200
        denied = tool.post(f"{proxy.model}/v1/embeddings", json={"model": "m", "input": "x"})
        assert denied.status_code == 403 and "default-deny" in denied.text
    seen = httpx.get(f"{proxy.model}/_scripted/requests").json()
    assert not any(r["path"] == "/v1/embeddings" for r in seen)


def test_edits_take_effect_within_two_seconds(proxy: Proxy) -> None:
    assert proxy.chat() == "allowed"
    rules = proxy.policies / "policy.csv"
    original = rules.read_text()
    rules.write_text(original + "p, role:assistant, model:scripted-small, chat, deny, freeze-small,\n")
    try:
        assert eventually(lambda: "freeze-small" in proxy.chat(), timeout=2.0)
    finally:
        rules.write_text(original)
    assert eventually(lambda: proxy.chat() == "allowed", timeout=2.0)


def test_a_broken_edit_is_rejected_and_the_previous_policy_keeps_serving(proxy: Proxy) -> None:
    rules = proxy.policies / "policy.csv"
    original = rules.read_text()
    rules.write_text("p, role:assistant, model:*, *, allow-ish, broken,\n")
    try:
        alerts = lambda: httpx.get(auth=AUTH, url=f"{proxy.collector}/api/alerts").json()["items"]  # noqa: E731
        assert eventually(lambda: any("allow-ish" in (a["message"] or "") for a in alerts()), timeout=10.0)
        assert proxy.chat() == "allowed"
        assert "denied" in ask(proxy, "scripted-large")
    finally:
        rules.write_text(original)


def test_a_route_and_an_mcp_server_added_to_bastion_yaml_are_served_without_a_restart(
    proxy: Proxy, tmp_path: Path
) -> None:
    config = proxy.policies / "bastion.yaml"
    original = config.read_text()
    headers = {"authorization": f"Bearer {proxy.key}"}
    before = httpx.post(f"{proxy.url}/extra/v1/chat/completions", headers=headers, json={"model": "scripted-small"})
    assert before.status_code == 404 and before.headers["x-bastion-error"] == "unknown_route"
    with processes.tool_server(tmp_path, free_ports(1)[0]) as tools:
        processes.ready(tools)
        route = (
            "routes:\n  - name: extra\n    prefix: /extra/\n    provider: openai\n"
            f"    upstream: {proxy.model}/\n    api_key_env: OPENAI_API_KEY\n"
        )
        server = f"mcp_servers:\n  - name: extra\n    url: {tools.url}/mcp\n"
        config.write_text(original.replace("routes:\n", route, 1).replace("mcp_servers:\n", server, 1))
        try:
            assert eventually(lambda: ask(proxy, "scripted-small", "/extra/v1") == "allowed", timeout=5.0)
            seen = asyncio.run(mcp2_session(f"{proxy.url}/mcp/extra", proxy.key, []))
            assert "get_weather" in seen["tools"]
        finally:
            config.write_text(original)
        assert eventually(lambda: "unknown_route" in ask(proxy, "scripted-small", "/extra/v1"), timeout=5.0)


def test_a_broken_bastion_yaml_edit_is_rejected_and_routes_keep_serving(proxy: Proxy) -> None:
    config = proxy.policies / "bastion.yaml"
    original = config.read_text()
    config.write_text(original + "mcp_refusals: shout\n")
    try:
        alerts = lambda: httpx.get(auth=AUTH, url=f"{proxy.collector}/api/alerts").json()["items"]  # noqa: E731
        assert eventually(lambda: any("shout" in (a["message"] or "") for a in alerts()), timeout=10.0)
        assert proxy.chat() == "allowed"
    finally:
        config.write_text(original)


def ask(proxy: Proxy, model: str, base: str = "/openai/v1") -> str:
    with openai.OpenAI(base_url=f"{proxy.url}{base}", api_key=proxy.key, max_retries=0) as client:
        try:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        except openai.PermissionDeniedError as e:
            return f"denied: {e.message}"
        except openai.NotFoundError as e:
            return f"not found: {e.message} {e.response.headers.get('x-bastion-error')}"
    return "allowed"


def bastion(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BASTION, *args], capture_output=True, text=True, cwd=ROOT)


def test_policy_check_accepts_the_bundled_files_and_names_what_is_wrong(tmp_path: Path) -> None:
    ok = bastion("policy", "check")
    assert ok.returncode == 0 and "OK: policy version" in ok.stdout
    broken = tmp_path / "policies"
    copy_policies(broken)
    (broken / "policy.csv").write_text("p, role:a, tool:x, call, allow, dup,\np, role:a, tool:y, call, allow, dup,\n")
    bad = bastion("policy", "check", "--policies", str(broken))
    assert bad.returncode == 1 and "unique name" in bad.stderr
    (broken / "policy.csv").write_text(
        "# tools\np, role:a, tool:x, call, allow, ok,\np, role:a, tool:y, call, allow, b, bool(1)\n"
    )
    unknown = bastion("policy", "check", "--policies", str(broken))
    assert unknown.returncode == 1 and "policy.csv:3: rule 'b'" in unknown.stderr and "'bool'" in unknown.stderr
    (broken / "policy.csv").write_text("p, role:a, tool:x, call, allow, ok,\n")
    with (broken / "bastion.yaml").open("a") as f:
        f.write("budgets:\n  daily: {per: team, usd: 5}\n")
    budget = bastion("policy", "check", "--policies", str(broken))
    assert budget.returncode == 1 and "budgets.daily.per has value 'team'" in budget.stderr


def test_policy_test_runs_the_bundled_tables_and_fails_on_a_mismatch(tmp_path: Path) -> None:
    passing = bastion("policy", "test", *map(str, (SESSION_POLICIES / "tests").glob("*.yaml")))
    assert passing.returncode == 0, passing.stdout
    assert " 0 failed" in passing.stdout
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        "cases:\n  - {name: large model, agent: a, role: assistant, object: 'model:scripted-large',"
        " action: chat, expect: allow}\n"
    )
    failing = bastion("policy", "test", str(wrong))
    assert failing.returncode == 1
    assert "FAIL  wrong.yaml: large model" in failing.stdout and "no-large-models" in failing.stdout
