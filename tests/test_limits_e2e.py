"""Limits in a running proxy, driven by the official SDKs: rates, concurrency, a looping agent, a failing upstream."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

from factories import clients, processes
from support import collector_api, copy_policies, create_key, free_ports

AGENTS = ("burst", "queue", "looper", "breaker", "mcp-burst", "edited")
BURST = "    burst: {requests_per_second: 1}\n"
# Replaces the bundled limits section (the last of two keys wins).
LIMITS = (
    "\nlimits:\n  agents:\n"
    + BURST
    + """    mcp-burst: {requests_per_second: 0.5}
    queue: {concurrency: 1, queue: 1, queue_timeout_seconds: 20}
    looper: {max_steps: 4, max_repeats: 10, suspend_on_trip: true}
  upstreams: {failures: 3, cooldown_seconds: 3}
"""
)
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
HELLO: Any = [{"role": "user", "content": "hello"}]


@dataclass
class Stack:
    url: str
    collector: str
    model: str
    keys: dict[str, str]
    policies: Path

    def openai(self, agent: str, retries: int = 0) -> openai.OpenAI:
        return clients.openai_client(f"{self.url}/openai/v1", self.keys[agent]).with_options(max_retries=retries)

    def anthropic(self, agent: str, retries: int = 0) -> anthropic.Anthropic:
        return clients.anthropic_client(f"{self.url}/anthropic", self.keys[agent]).with_options(max_retries=retries)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("limits")
    policies = copy_policies(tmp / "policies")
    with (policies / "bastion.yaml").open("a") as f:
        f.write(LIMITS)
    keys = {agent: create_key(policies / "keys.yaml", agent) for agent in AGENTS}
    model_port, proxy_port, explicit_port, collector_port, tools_port = free_ports(5)
    env = processes.routes_env(processes.url(model_port), policies / "keys.yaml", processes.url(collector_port))
    env["BASTION_MCP_TOOLS_URL"] = f"{processes.url(tools_port)}/mcp"
    with (
        processes.scripted_model(tmp, model_port, chunk_delay=0.5) as model,
        processes.tool_server(tmp, tools_port) as tools,
        processes.collector(tmp, collector_port) as collector,
        processes.proxy(tmp, "proxy", (proxy_port, explicit_port), env, policies) as proxy,
    ):
        processes.ready(model, tools, collector, proxy)
        yield Stack(proxy.url, collector.url, model.url, keys, policies)


def eventually(check: Callable[[], object], timeout: float = 15.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError("the condition never held")


def test_a_burst_over_the_rate_gets_429_with_retry_after_and_the_sdks_retry_succeeds(stack: Stack) -> None:
    client = stack.openai("burst")
    client.chat.completions.create(model="scripted-small", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="scripted-small", messages=HELLO)
    assert e.value.response.headers["retry-after"] == "1"
    assert e.value.body == {
        "message": e.value.body["message"],  # type: ignore[index]
        "type": "requests",
        "code": "rate_limit_exceeded",
        "param": None,
    }
    assert "1 requests per second for agent burst" in e.value.message
    # The SDK's own backoff waits for Retry-After and tries again.
    reply = stack.openai("burst", retries=2).chat.completions.create(model="scripted-small", messages=HELLO)
    assert reply.choices[0].message.content == "Scripted reply to: hello"
    claude = stack.anthropic("burst")
    with pytest.raises(anthropic.RateLimitError) as a:
        for _ in range(2):
            claude.messages.create(model="scripted-small", max_tokens=10, messages=HELLO)
    assert a.value.response.headers["retry-after"] == "1"
    assert a.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    message = stack.anthropic("burst", retries=2).messages.create(model="scripted-small", max_tokens=10, messages=HELLO)
    assert message.content[0].text == "Scripted reply to: hello"  # type: ignore[union-attr]


def test_a_concurrency_limit_queues_a_call_and_refuses_beyond_its_queue(stack: Stack) -> None:
    client = stack.openai("queue")
    results: dict[int, object] = {}

    def call(n: int) -> None:
        try:
            chunks = client.chat.completions.create(model="scripted-small", messages=HELLO, stream=True)
            results[n] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        except openai.APIStatusError as e:
            results[n] = e

    first = threading.Thread(target=call, args=(1,))
    first.start()
    time.sleep(0.5)  # the first holds the agent's only slot while it streams (0.5 s a chunk)
    second = threading.Thread(target=call, args=(2,))
    second.start()
    time.sleep(0.5)  # the second waits in the queue of one
    call(3)  # the queue is full: refused at once
    refused = results[3]
    assert isinstance(refused, openai.RateLimitError) and refused.code == "concurrency_limit_exceeded"
    assert refused.response.headers["x-bastion-error"] == "concurrency_limit_exceeded"
    assert 2 not in results  # still queued or streaming
    first.join()
    second.join()
    assert results[1] == results[2] == "Scripted reply to: hello"
    # Another agent is not held up by this one's queue.
    stack.openai("burst", retries=2).chat.completions.create(model="scripted-small", messages=HELLO)


def test_a_looping_agent_is_stopped_at_its_step_budget_and_suspended(stack: Stack) -> None:
    client = stack.openai("looper")
    messages: Any = [{"role": "user", "content": 'Keep calling get_weather {"city": "Paris"}'}]
    steps = 0
    with pytest.raises(openai.PermissionDeniedError) as e:
        while steps < 10:
            reply = client.chat.completions.create(model="scripted-small", messages=messages, tools=TOOLS)
            steps += 1
            call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
            messages += [
                reply.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "Sunny"},
            ]
    assert steps == 4 and e.value.code == "step_budget_exceeded"
    assert "step budget of 4" in e.value.message
    # suspend_on_trip: the kill switch holds the agent until a human resumes it.
    with pytest.raises(openai.PermissionDeniedError) as suspended:
        client.chat.completions.create(model="scripted-small", messages=HELLO)
    assert suspended.value.code == "agent_suspended"
    with collector_api(stack.collector) as api:
        state = eventually(lambda: api.get("/api/agents/state").json()["agents"].get("looper"))
        assert state["suspended"]  # type: ignore[index]
        alert = eventually(lambda: [a for a in api.get("/api/alerts").json()["items"] if a["type"] == "runaway_agent"])
        assert "step budget of 4" in alert[0]["message"]  # type: ignore[index]
        audit = eventually(lambda: _decisions(api, "looper", "limit:runaway:steps"))
        assert audit


def _decisions(api: httpx.Client, agent: str, rule: str) -> list[Any]:
    items = api.get("/api/audit", params={"agent": agent, "limit": 50}).json()["items"]
    return [i for i in items if i.get("rule") == rule]


def test_an_upstream_returning_500s_trips_the_breaker_then_recovers(stack: Stack) -> None:
    client = stack.openai("breaker")
    for _ in range(3):
        with pytest.raises(openai.InternalServerError) as e:
            client.chat.completions.create(model="scripted-failing", messages=HELLO)
        assert e.value.status_code == 500
    seen = len(httpx.get(f"{stack.model}/_scripted/requests").json())
    # Open: every call to that upstream fails fast, even to a healthy model, without reaching it.
    with pytest.raises(openai.InternalServerError) as open_:
        client.chat.completions.create(model="scripted-small", messages=HELLO)
    assert open_.value.status_code == 503 and open_.value.code == "upstream_circuit_open"
    assert 1 <= int(open_.value.response.headers["retry-after"]) <= 3
    assert len(httpx.get(f"{stack.model}/_scripted/requests").json()) == seen
    # After the cool-down the SDK's retry (Retry-After) gets through, and a success closes the circuit.
    reply = stack.openai("breaker", retries=2).chat.completions.create(model="scripted-small", messages=HELLO)
    assert reply.choices[0].message.content == "Scripted reply to: hello"
    with collector_api(stack.collector) as api:
        alerts = eventually(
            lambda: [a for a in api.get("/api/alerts").json()["items"] if a["type"] == "upstream_circuit_open"]
        )
        assert "failed 3 times in a row" in alerts[0]["message"]  # type: ignore[index]
        assert eventually(lambda: _decisions(api, "breaker", "limit:circuit:upstream"))


def test_over_mcp_a_burst_gets_a_tool_error_saying_when_to_retry(stack: Stack) -> None:
    async def calls() -> list[CallToolResult]:
        headers = {"authorization": f"Bearer {stack.keys['mcp-burst']}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(f"{stack.url}/mcp/tools", http_client=http)) as session,
        ):
            first = await session.call_tool("get_weather", {"city": "Paris"})
            second = await session.call_tool("get_weather", {"city": "Paris"})
            await asyncio.sleep(2.1)
            return [first, second, await session.call_tool("get_weather", {"city": "Paris"})]

    first, second, third = asyncio.run(calls())
    assert not first.is_error and not third.is_error
    assert second.is_error and second.meta is not None
    refusal = second.meta["bastion/refusal"]
    assert (refusal["code"], refusal["rule"]) == ("rate_limit_exceeded", "limit:rate:agent")
    assert refusal["retry_after"] in (1, 2)  # one call per 2 s
    text = "".join(b.text for b in second.content if isinstance(b, TextContent))
    assert "get_weather was not run" in text and f"retry after {refusal['retry_after']} s" in text


def test_an_edit_of_the_limits_takes_effect_while_running(stack: Stack) -> None:
    client = stack.openai("edited")
    for _ in range(3):
        client.chat.completions.create(model="scripted-small", messages=HELLO)
    config = stack.policies / "bastion.yaml"
    config.write_text(config.read_text().replace(BURST, f"{BURST}    edited: {{requests_per_minute: 1}}\n"))

    def refused() -> bool:
        try:
            client.chat.completions.create(model="scripted-small", messages=HELLO)
        except openai.RateLimitError:
            return True
        return False

    assert eventually(refused, timeout=5)
