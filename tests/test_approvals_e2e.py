"""End to end: calls held for a human, decided through the collector, and humans stepping in.

Real processes: the demo tool server, the scripted model, one collector and two proxies sharing it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import httpx2
import openai
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import TextContent

from bastion import semconv
from factories import clients, processes
from support import AUTH, BASTION, OPERATORS_FILE, copy_policies, free_ports

EXTRA_RULES = """\
p, role:assistant, model:scripted-review, *, review, model-needs-approval,
p, role:assistant, tool:query_database, call, review, writes-need-approval, r.args.sql.lower().startswith("update")
"""
APPROVALS = """
approvals:
  timeout_seconds: 120
  rules:
    writes-need-approval: {timeout_seconds: 2}
    model-needs-approval: {scope: {calls: 2}}
"""
LEGACY_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@dataclass
class Stack:
    proxies: list[str]
    tools: str
    model: str
    collector: str
    keys: dict[str, str]
    token: str
    policies: Path
    webhook: list[dict[str, Any]] = field(default_factory=list)

    def received(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.tools}/_tool_server/calls").json())

    def approvals(self, status: str | None = None) -> list[dict[str, Any]]:
        params = {"status": status} if status else {}
        return list(httpx.get(auth=AUTH, url=f"{self.collector}/api/approvals", params=params).json()["items"])

    def pending(self, match: Callable[[dict[str, Any]], bool], timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [a for a in self.approvals("pending") if match(a)]
            if found:
                return found[0]
            time.sleep(0.05)
        raise TimeoutError("no matching pending approval")

    def decide(self, approval_id: str, decision: str, reason: str, token: str | None = None) -> httpx.Response:
        return httpx.post(
            auth=AUTH,
            url=f"{self.collector}/api/approvals/{approval_id}/decision",
            json={"decision": decision, "reason": reason},
            headers={"authorization": f"Bearer {token or self.token}"},
        )

    def cli(self, *args: str) -> str:
        env = {"BASTION_APPROVER_TOKEN": self.token, "BASTION_COLLECTOR_URL": self.collector}
        done = subprocess.run([*BASTION, *args], capture_output=True, text=True, env={**_environ(), **env})
        assert done.returncode == 0, done.stderr
        return done.stdout


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _last_line(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]


class Webhook(BaseHTTPRequestHandler):
    """A Slack-like receiver that fails every first attempt, so that retries show."""

    received: ClassVar[list[dict[str, Any]]] = []
    attempts = 0

    def do_POST(self) -> None:
        type(self).attempts += 1
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        ok = type(self).attempts % 2 == 0
        if ok:
            self.received.append(body)
        self.send_response(200 if ok else 503)
        self.send_header("content-length", "0")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("approvals")
    policies = tmp / "policies"
    copy_policies(policies, "tests")
    with (policies / "policy.csv").open("a") as f:
        f.write(EXTRA_RULES)
    with (policies / "bastion.yaml").open("a") as f:
        f.write(APPROVALS)
    (policies / "keys.yaml").write_text("keys: []\n")
    keys = {
        agent: _last_line(
            [*BASTION, "keys", "create", "--agent", agent, "--role", "assistant", "--policies", str(policies)]
        )
        for agent in ("agent-1", "agent-2", "agent-3")
    }
    # Added as a user would, to the operators file the test collectors read (support.CREDENTIALS_ENV).
    token = _last_line([*BASTION, "approvers", "add", "--name", "alice", "--operators-file", str(OPERATORS_FILE)])
    tools_port, model_port, collector_port, webhook_port, *proxy_ports = free_ports(8)
    webhook = ThreadingHTTPServer(("127.0.0.1", webhook_port), Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    env = {
        "BASTION_MCP_TOOLS_URL": f"{processes.url(tools_port)}/mcp",
        "BASTION_OPENAI_UPSTREAM": processes.url(model_port) + "/",
        "OPENAI_API_KEY": "provider-key",
        "BASTION_POLICIES": str(policies),
        "BASTION_APPROVAL_WEBHOOK_URL": f"http://127.0.0.1:{webhook_port}/hook",
    }
    flags = ["--collector-url", processes.url(collector_port)]
    with (
        processes.tool_server(tmp, tools_port) as tools,
        processes.scripted_model(tmp, model_port) as model,
        processes.collector(tmp, collector_port, env) as collector,
        processes.proxy(tmp, "proxy0", proxy_ports[:2], env, extra_args=flags) as proxy_a,
        processes.proxy(tmp, "proxy1", proxy_ports[2:], env, extra_args=flags) as proxy_b,
    ):
        processes.ready(tools, model, collector, proxy_a, proxy_b)
        urls = [proxy_a.url, proxy_b.url]
        yield Stack(urls, tools.url, model.url, collector.url, keys, token, policies, Webhook.received)
    webhook.shutdown()
    webhook.server_close()


_pool = ThreadPoolExecutor(max_workers=8)


def in_background[T](fn: Callable[[], T]) -> Future[T]:
    return _pool.submit(fn)


async def _mcp_call(url: str, key: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    async with (
        httpx2.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        try:
            result = await client.call_tool(name, arguments)
        except MCPError as e:
            return {"error": {"code": e.error.code, "message": e.error.message}}
        text = "".join(b.text for b in result.content if isinstance(b, TextContent))
        return {"refused": text} if result.is_error else {"result": text}


def mcp_call(stack: Stack, name: str, arguments: dict[str, Any], agent: str = "agent-1", proxy: int = 0) -> Any:
    return asyncio.run(_mcp_call(f"{stack.proxies[proxy]}/mcp/tools", stack.keys[agent], name, arguments))


def chat(stack: Stack, model: str, agent: str = "agent-1", proxy: int = 0, text: str = "hello") -> str:
    client = clients.openai_client(f"{stack.proxies[proxy]}/openai/v1", stack.keys[agent])
    try:
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], timeout=60)
    except openai.PermissionDeniedError as e:
        return f"denied: {e.message}"
    return reply.choices[0].message.content or ""


def span_attributes(stack: Stack, trace_id: str, timeout: float = 20) -> dict[str, Any]:
    """The proxy span's attributes for a trace, once exported."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(auth=AUTH, url=f"{stack.collector}/api/traces/{trace_id}")
        if r.status_code == 200:
            for span in r.json()["spans"]:
                if semconv.BASTION_APPROVAL_STATUS in span["attributes"]:
                    return dict(span["attributes"])
        time.sleep(0.2)
    raise TimeoutError(f"no span with approval attributes in trace {trace_id}")


def payment(amount: int) -> Callable[[dict[str, Any]], bool]:
    return lambda a: a["target"] == "tool:tools/send_money" and a["arguments"].get("amount") == amount


def test_held_mcp_call_resumes_on_approve(stack: Stack) -> None:
    held = in_background(lambda: mcp_call(stack, "send_money", {"amount": 500, "recipient": "carol@example.com"}))
    approval = stack.pending(payment(500))
    assert (approval["agent_id"], approval["kind"], approval["rule"]) == (
        "agent-1",
        "mcp",
        "large-payments-need-approval",
    )
    # The approver sees the arguments as the audit store keeps them: personal data redacted.
    assert approval["arguments"] == {"amount": 500, "recipient": "<EMAIL_ADDRESS>"}
    assert approval["trace_id"] and approval["action"] == "call"
    assert not held.done()  # the call waits, while other calls flow
    assert mcp_call(stack, "get_weather", {"city": "Paris"}) == {"result": "Paris: 18 C, cloudy"}
    assert stack.decide(approval["id"], "approve", "known supplier").status_code == 200
    assert "500.00 USD sent to carol@example.com" in held.result(timeout=30)["result"]
    assert any(c["name"] == "send_money" and c["arguments"]["amount"] == 500 for c in stack.received())
    attrs = span_attributes(stack, approval["trace_id"])
    assert attrs[semconv.BASTION_APPROVAL_STATUS] == "approved" and attrs[semconv.BASTION_APPROVAL_APPROVER] == "alice"
    # The webhook heard of it (after one retry: the receiver fails every first attempt).
    (note,) = [n for n in stack.webhook if n["approval"]["id"] == approval["id"]]
    assert approval["id"] in note["text"] and "agent-1" in note["text"] and "send_money" in note["text"]
    assert attrs[semconv.BASTION_APPROVAL_REASON] == "known supplier"
    assert attrs[semconv.BASTION_APPROVAL_ID] == approval["id"] and attrs[semconv.BASTION_DECISION] == "allow"


def test_deny_carries_the_approvers_reason(stack: Stack) -> None:
    held = in_background(lambda: mcp_call(stack, "send_money", {"amount": 600, "recipient": "carol@example.com"}))
    approval = stack.pending(payment(600))
    stack.decide(approval["id"], "deny", "not in the budget")
    # The refusal is a tool result with isError, for the model to read.
    assert "denied by approver alice: not in the budget" in held.result(timeout=30)["refused"]
    assert stack.decide(approval["id"], "approve", "too late").status_code == 409
    attrs = span_attributes(stack, approval["trace_id"])
    assert attrs[semconv.BASTION_APPROVAL_STATUS] == "denied" and attrs[semconv.ERROR_TYPE] == "approval_denied"


def test_no_decision_in_time_is_a_timeout(stack: Stack) -> None:
    outcome = mcp_call(stack, "query_database", {"sql": "UPDATE accounts SET balance = 0"})
    assert "no approver decided within 2.0 seconds" in outcome["refused"]
    (record,) = [a for a in stack.approvals("timeout") if a["target"] == "tool:tools/query_database"]
    assert record["rule"] == "writes-need-approval"


def test_an_agent_that_disconnects_abandons_its_approval(stack: Stack) -> None:
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call"}
    call["params"] = {"name": "send_money", "arguments": {"amount": 700, "recipient": "carol@example.com"}}
    headers = {**LEGACY_HEADERS, "authorization": f"Bearer {stack.keys['agent-1']}"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{stack.proxies[0]}/mcp/tools", json=call, headers=headers, timeout=1.0)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = [a for a in stack.approvals("abandoned") if a["arguments"].get("amount") == 700]
        if found:
            break
        time.sleep(0.2)
    assert found, stack.approvals()


def test_model_call_held_and_scope_shared_by_another_proxy(stack: Stack) -> None:
    held = in_background(lambda: chat(stack, "scripted-review", text="pay the invoice", proxy=0))
    approval = stack.pending(lambda a: a["target"] == "model:scripted-review")
    assert approval["kind"] == "model" and approval["messages"][-1] == {"role": "user", "content": "pay the invoice"}
    assert approval["scope"] == {"calls": 2, "minutes": None}
    stack.decide(approval["id"], "approve", "go ahead for this task")
    assert not held.result(timeout=30).startswith("denied")
    # The grant covers the agent's next two calls under the rule, through the other proxy too.
    assert not chat(stack, "scripted-review", proxy=1).startswith("denied")
    assert not chat(stack, "scripted-review", proxy=1).startswith("denied")
    granted = [a for a in stack.approvals("approved") if a.get("grant")]
    assert len(granted) == 2 and {a["proxy"] for a in granted} == {stack.proxies[1].removeprefix("http://")}
    third = in_background(lambda: chat(stack, "scripted-review", proxy=1))
    again = stack.pending(lambda a: a["target"] == "model:scripted-review")
    stack.decide(again["id"], "deny", "enough")
    assert third.result(timeout=30).startswith("denied") and "enough" in third.result()


def test_only_approvers_may_decide(stack: Stack) -> None:
    held = in_background(lambda: mcp_call(stack, "send_money", {"amount": 800, "recipient": "carol@example.com"}))
    approval = stack.pending(payment(800))
    for token, status in ((stack.keys["agent-1"], 403), ("bap_nope_nope", 401), (stack.token + "x", 401)):
        r = stack.decide(approval["id"], "approve", "sneaky", token=token)
        assert r.status_code == status, r.text
    r = httpx.post(f"{stack.collector}/api/approvals/{approval['id']}/decision", json={"decision": "approve"})
    assert r.status_code == 401
    r = httpx.post(f"{stack.collector}/api/agents/agent-1/suspend", json={}, headers={"authorization": "Bearer x"})
    assert r.status_code == 401
    assert stack.cli("approvals", "deny", approval["id"], "--reason", "from the shell").startswith(approval["id"])
    assert "from the shell" in held.result(timeout=30)["refused"]
    listed = stack.cli("approvals", "list", "--status", "denied")
    assert approval["id"] in listed and "alice" in listed


def wait_until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_kill_switch_suspends_and_resumes_an_agent(stack: Stack) -> None:
    assert chat(stack, "scripted-small", agent="agent-2", proxy=1) != ""
    held = in_background(
        lambda: mcp_call(stack, "send_money", {"amount": 900, "recipient": "carol@example.com"}, agent="agent-2")
    )
    stack.pending(payment(900))
    stack.cli("agents", "suspend", "agent-2", "--reason", "runaway loop")
    assert "suspended while the call was held" in held.result(timeout=30)["refused"]
    wait_until(lambda: chat(stack, "scripted-small", agent="agent-2", proxy=1).startswith("denied"))
    assert "runaway loop" in chat(stack, "scripted-small", agent="agent-2", proxy=0)
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_weather", "arguments": {}}}
    headers = {**LEGACY_HEADERS, "authorization": f"Bearer {stack.keys['agent-2']}"}
    refused = httpx.post(f"{stack.proxies[0]}/mcp/tools", json=call, headers=headers)  # MCP too
    assert refused.status_code == 403 and "suspended" in refused.json()["error"]["message"]
    assert not chat(stack, "scripted-small", agent="agent-3", proxy=1).startswith("denied")  # others go on
    stack.cli("agents", "resume", "agent-2", "--reason", "fixed")
    wait_until(lambda: not chat(stack, "scripted-small", agent="agent-2", proxy=1).startswith("denied"))
    # The interventions are in the audit trail, with who and why.
    wait_until(lambda: {"suspend", "resume"} <= {i["decision"] for i in _audit(stack, "agent-2")})
    denied = [i for i in _audit(stack, "agent-2") if i["rule"] == "agent-suspended"]
    assert denied and all(i["decision"] == "deny" for i in denied)


def _audit(stack: Stack, agent: str) -> list[dict[str, Any]]:
    return list(
        httpx.get(auth=AUTH, url=f"{stack.collector}/api/audit", params={"agent": agent, "limit": 200}).json()["items"]
    )


def test_guidance_reaches_the_agents_next_model_call_once(stack: Stack) -> None:
    httpx.delete(f"{stack.model}/_scripted/requests")
    stack.cli("agents", "guide", "agent-3", "Stop paying invoices until the audit is done.")
    time.sleep(1.5)  # proxies poll the agents' state every half second
    chat(stack, "scripted-small", agent="agent-3", proxy=1)
    chat(stack, "scripted-small", agent="agent-3", proxy=0)
    first, second = [r["body"]["messages"] for r in httpx.get(f"{stack.model}/_scripted/requests").json()]
    assert first[-1]["role"] == "system" and "Stop paying invoices until the audit is done." in first[-1]["content"]
    assert [m["role"] for m in second] == ["user"]
