"""End to end: tool calls the model emits, governed by `bastion proxy` between the official SDKs and
the scripted model, in both API formats, streamed and not, recorded by `bastion collector`."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest

from factories import clients, processes
from support import AUTH, SESSION_POLICIES, copy_policies, create_key, free_ports

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "to": {"type": "string"}}}
OFFERED = ("get_weather", "send_email", "delete_user")
DENIED = 'Please call send_email {"to": "x@evil.com", "subject": "secrets"}'
ALLOWED = 'Please call get_weather {"city": "Paris"}'
EXPLANATION = "Bastion blocked the model's call of tool 'send_email'"


@dataclass
class Stack:
    model: str
    proxy: str
    blocking_proxy: str
    collector: str
    key: str

    def upstream_requests(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.model}/_scripted/requests").json())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("toolcalls")
    model_port, collector_port, *proxy_ports = free_ports(6)
    key = create_key(tmp / "keys.yaml")
    blocking = tmp / "blocking-policies"
    copy_policies(blocking)
    config = (blocking / "bastion.yaml").read_text()
    if "on_deny:" in config:
        config = re.sub(r"on_deny: *\w+", "on_deny: block", config)
    else:
        config += "\ntool_calls:\n  on_deny: block\n"
    (blocking / "bastion.yaml").write_text(config)
    env = processes.routes_env(processes.url(model_port), tmp / "keys.yaml", processes.url(collector_port))
    with (
        processes.scripted_model(tmp, model_port) as model,
        processes.collector(tmp, collector_port) as collector,
        processes.proxy(tmp, "replace", proxy_ports[:2], env, SESSION_POLICIES) as replacing,
        processes.proxy(tmp, "block", proxy_ports[2:], env, blocking) as blocking_proxy,
    ):
        processes.ready(model, collector, replacing, blocking_proxy)
        yield Stack(model.url, replacing.url, blocking_proxy.url, collector.url, key)


# One agent turn per API and mode: the tool calls the agent receives, and the text.
Turn = tuple[list[tuple[str, Any]], str]


def openai_client(base: str, key: str) -> openai.OpenAI:
    return clients.openai_client(f"{base}/openai/v1", key)


def anthropic_client(base: str, key: str) -> anthropic.Anthropic:
    return clients.anthropic_client(f"{base}/anthropic", key)


def chat_turn(base: str, key: str, prompt: str, stream: bool) -> Turn:
    client = openai_client(base, key)
    tools: Any = [{"type": "function", "function": {"name": n, "parameters": SCHEMA}} for n in OFFERED]
    messages: Any = [{"role": "user", "content": prompt}]
    if stream:
        with client.chat.completions.stream(model="scripted-small", messages=messages, tools=tools) as s:
            completion = s.get_final_completion()
    else:
        completion = client.chat.completions.create(model="scripted-small", messages=messages, tools=tools)
    message = completion.choices[0].message
    calls = [
        (c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or [] if c.type == "function"
    ]
    expected_finish = "tool_calls" if calls else "stop"
    assert completion.choices[0].finish_reason == expected_finish
    return calls, message.content or ""


def responses_turn(base: str, key: str, prompt: str, stream: bool) -> Turn:
    client = openai_client(base, key)
    tools: Any = [{"type": "function", "name": n, "parameters": SCHEMA, "strict": False} for n in OFFERED]
    if stream:
        with client.responses.stream(model="scripted-small", input=prompt, tools=tools) as s:
            response = s.get_final_response()
    else:
        response = client.responses.create(model="scripted-small", input=prompt, tools=tools)
    calls = [(i.name, json.loads(i.arguments)) for i in response.output if i.type == "function_call"]
    return calls, response.output_text


def anthropic_turn(base: str, key: str, prompt: str, stream: bool) -> Turn:
    client = anthropic_client(base, key)
    tools: Any = [{"name": n, "input_schema": SCHEMA} for n in OFFERED]
    messages: Any = [{"role": "user", "content": prompt}]
    if stream:
        with client.messages.stream(model="scripted-small", max_tokens=100, messages=messages, tools=tools) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(model="scripted-small", max_tokens=100, messages=messages, tools=tools)
    calls = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert message.stop_reason == ("tool_use" if calls else "end_turn")
    return calls, "".join(b.text for b in message.content if b.type == "text")


TURNS: dict[str, Callable[[str, str, str, bool], Turn]] = {
    "chat": chat_turn,
    "responses": responses_turn,
    "anthropic": anthropic_turn,
}
MODES = [(api, stream) for api in TURNS for stream in (False, True)]
MODE_IDS = [f"{api}-{'stream' if stream else 'json'}" for api, stream in MODES]


@pytest.mark.parametrize(("api", "stream"), MODES, ids=MODE_IDS)
def test_a_denied_tool_call_never_reaches_the_agent(stack: Stack, api: str, stream: bool) -> None:
    calls, text = TURNS[api](stack.proxy, stack.key, DENIED, stream)
    assert calls == []
    assert EXPLANATION in text and "x@evil.com" not in text


@pytest.mark.parametrize(("api", "stream"), MODES, ids=MODE_IDS)
def test_an_allowed_tool_call_arrives_intact(stack: Stack, api: str, stream: bool) -> None:
    calls, text = TURNS[api](stack.proxy, stack.key, ALLOWED, stream)
    assert calls == [("get_weather", {"city": "Paris"})]
    assert "Bastion" not in text


@pytest.mark.parametrize("api", list(TURNS))
def test_the_model_is_never_offered_a_tool_the_agent_may_not_call(stack: Stack, api: str) -> None:
    httpx.delete(f"{stack.model}/_scripted/requests")
    # Asked for it by name, the model cannot call it: it was not offered.
    calls, text = TURNS[api](stack.proxy, stack.key, 'call delete_user {"id": 7}', False)
    assert calls == [] and "Scripted reply to" in text
    (request,) = stack.upstream_requests()
    names = [t.get("name") or t.get("function", {}).get("name") for t in request["body"]["tools"]]
    assert names == ["get_weather", "send_email"]
    # The call's span records what was hidden.
    trace_id = request["headers"]["traceparent"].split("-")[1]
    deadline = time.monotonic() + 20
    while not (spans := httpx.get(auth=AUTH, url=f"{stack.collector}/api/traces/{trace_id}").json().get("spans")):
        assert time.monotonic() < deadline, "the call's span never arrived"
        time.sleep(0.3)
    assert json.loads(spans[0]["attributes"]["bastion.tools.hidden"]) == ["delete_user"]


def test_block_mode_refuses_the_whole_response(stack: Stack) -> None:
    client = openai_client(stack.blocking_proxy, stack.key)
    tools: Any = [{"type": "function", "function": {"name": n, "parameters": SCHEMA}} for n in OFFERED]
    messages: Any = [{"role": "user", "content": DENIED}]
    with pytest.raises(openai.PermissionDeniedError, match="send_email"):
        client.chat.completions.create(model="scripted-small", messages=messages, tools=tools)
    with pytest.raises(openai.APIError, match="send_email") as raised:
        for _ in client.chat.completions.create(model="scripted-small", messages=messages, tools=tools, stream=True):
            pass
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "policy_denied"
    responses_tools: Any = [{"type": "function", "name": n, "parameters": SCHEMA} for n in OFFERED]
    with pytest.raises(openai.APIError, match="send_email"):
        for _ in client.responses.create(model="scripted-small", input=DENIED, tools=responses_tools, stream=True):
            pass
    claude = anthropic_client(stack.blocking_proxy, stack.key)
    claude_tools: Any = [{"name": n, "input_schema": SCHEMA} for n in OFFERED]
    with pytest.raises(anthropic.PermissionDeniedError, match="send_email"):
        claude.messages.create(model="scripted-small", max_tokens=50, messages=messages, tools=claude_tools)
    with (
        pytest.raises(anthropic.APIStatusError, match="send_email"),
        claude.messages.stream(model="scripted-small", max_tokens=50, messages=messages, tools=claude_tools) as s,
    ):
        s.get_final_message()
    # Allowed calls still pass in block mode.
    assert chat_turn(stack.blocking_proxy, stack.key, ALLOWED, True)[0] == [("get_weather", {"city": "Paris"})]


def audit(stack: Stack, count: int, **params: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        items = list(
            httpx.get(auth=AUTH, url=f"{stack.collector}/api/audit", params={"limit": 500, **params}).json()["items"]
        )
        if len(items) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.3)


def test_tool_call_decisions_are_in_the_audit_trail(stack: Stack) -> None:
    TURNS["chat"](stack.proxy, stack.key, DENIED, False)
    TURNS["chat"](stack.proxy, stack.key, ALLOWED, True)
    denied = audit(stack, 1, kind="tool", decision="deny")
    allowed = audit(stack, 1, kind="tool", decision="allow")
    assert denied and allowed
    assert {i["rule"] for i in denied} == {"default-deny"} and {i["rule"] for i in allowed} == {"weather-lookups"}
    item = denied[0]
    assert item["span_name"] == "apply_guardrail tool_call" and item["operation"] == "apply_guardrail"
    assert item["agent_id"] == "agent-1" and item["kind"] == "tool"
    spans = httpx.get(auth=AUTH, url=f"{stack.collector}/api/traces/{item['trace_id']}").json()["spans"]
    decided = next(s for s in spans if s["span_id"] == item["span_id"])
    parent = next(s for s in spans if s["span_id"] == decided["parent_span_id"])
    assert parent["span_name"] == "chat scripted-small"
    attrs = decided["attributes"]
    assert attrs["gen_ai.tool.name"] == "send_email" and attrs["gen_ai.security.target.type"] == "tool_call"
    assert attrs["gen_ai.tool.call.id"] == attrs["gen_ai.security.target.id"]
    assert attrs["gen_ai.tool.call.id"].startswith(("call_", "toolu_"))
