"""End to end: PII redaction in `bastion proxy` between the official SDKs and the scripted model.

The scripted model records every request it receives, so the tests check what a provider would
see; the collector's API shows what was stored.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from bastion.proxy import mcp
from factories import clients, processes
from factories.mcp_sessions import mcp1_session, mcp2_session
from factories.pausing_mcp import PROGRESS, PausingServer, pausing_server
from support import AUTH, copy_policies, create_key, free_ports

EMAIL = "alice.w@example.com"
SSN = "536-22-8954"
CARD = "4111 1111 1111 1111"
PHONE = "+1 415 555 0134"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
NAME = "Maria Gonzalez"
PROMPT = f"I am {NAME}. My email is {EMAIL} and my SSN is {SSN}; charge card {CARD} please."
RAW = (NAME, EMAIL, SSN, CARD, PHONE, AWS_KEY)
SCHEMA = {"type": "object", "properties": {"to": {"type": "string"}, "subject": {"type": "string"}}}
PII_YAML = """
entities:
  PERSON: pseudonymize
  EMAIL_ADDRESS: pseudonymize
  PHONE_NUMBER: {request: pseudonymize, response: redact, threshold: 0.6}
  US_SSN: redact
  CREDIT_CARD: mask
  AWS_ACCESS_KEY: block
  IP_ADDRESS: {request: allow, response: block}
  LOCATION: {request: pseudonymize, response: allow}
  AGE: {request: pseudonymize, response: allow}
  DATE_OF_BIRTH: {request: pseudonymize, response: allow}
  UK_POSTCODE: {request: pseudonymize, response: allow}
  STRIPE_KEY: block
overrides:
  - agent: agent-2
    entities:
      PHONE_NUMBER: {request: allow}
mcp: enforce
"""
FAILING_YAML = """
entities:
  EMAIL_ADDRESS: redact
timeout_ms: 0
routes:
  anthropic: {on_error: allow}
"""


@dataclass
class Stack:
    model: str
    proxy: str
    failing_proxy: str
    collector: str
    tools: str
    key: str
    key2: str

    def upstream_requests(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.model}/_scripted/requests").json())

    def clear(self) -> None:
        httpx.delete(f"{self.model}/_scripted/requests")


def policies(tmp: Path, name: str, pii_yaml: str) -> Path:
    target = tmp / f"policies-{name}"
    copy_policies(target)
    (target / "pii.yaml").write_text(pii_yaml)
    return target


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("pii")
    model_port, collector_port, tools_port, *proxy_ports = free_ports(7)
    key, key2 = create_key(tmp / "keys.yaml", "agent-1"), create_key(tmp / "keys.yaml", "agent-2")
    env = {
        **processes.routes_env(processes.url(model_port), tmp / "keys.yaml", processes.url(collector_port)),
        "BASTION_MCP_TOOLS_URL": f"{processes.url(tools_port)}/mcp",
    }
    with (
        processes.scripted_model(tmp, model_port, chunk_delay=0.02) as model,
        processes.collector(tmp, collector_port) as collector,
        processes.tool_server(tmp, tools_port) as tools,
        processes.proxy(tmp, "main", proxy_ports[:2], env, policies(tmp, "main", PII_YAML)) as main,
        processes.proxy(tmp, "failing", proxy_ports[2:], env, policies(tmp, "failing", FAILING_YAML)) as failing,
    ):
        processes.ready(model, collector, tools, main, failing)
        yield Stack(model.url, main.url, failing.url, collector.url, tools.url, key, key2)


def openai_client(base: str, key: str) -> openai.OpenAI:
    return clients.openai_client(f"{base}/openai/v1", key)


def anthropic_client(base: str, key: str) -> anthropic.Anthropic:
    return clients.anthropic_client(f"{base}/anthropic", key)


def ask(base: str, key: str, api: str, stream: bool, prompt: str, tools: bool = False) -> tuple[str, list[Any]]:
    """One turn: the text the agent receives and the tool calls (name, arguments)."""
    if api == "chat":
        client = openai_client(base, key)
        chat_tools: Any = [{"type": "function", "function": {"name": "send_email", "parameters": SCHEMA}}]
        kwargs: Any = {"tools": chat_tools} if tools else {}
        messages: Any = [{"role": "user", "content": prompt}]
        if stream:
            with client.chat.completions.stream(model="scripted-small", messages=messages, **kwargs) as s:
                message = s.get_final_completion().choices[0].message
        else:
            message = (
                client.chat.completions.create(model="scripted-small", messages=messages, **kwargs).choices[0].message
            )
        calls = [
            (c.function.name, json.loads(c.function.arguments))
            for c in message.tool_calls or []
            if c.type == "function"
        ]
        return message.content or "", calls
    if api == "responses":
        client = openai_client(base, key)
        responses_tools: Any = [{"type": "function", "name": "send_email", "parameters": SCHEMA, "strict": False}]
        kwargs = {"tools": responses_tools} if tools else {}
        if stream:
            with client.responses.stream(model="scripted-small", input=prompt, **kwargs) as s:
                response = s.get_final_response()
        else:
            response = client.responses.create(model="scripted-small", input=prompt, **kwargs)
        calls = [(i.name, json.loads(i.arguments)) for i in response.output if i.type == "function_call"]
        return response.output_text, calls
    claude = anthropic_client(base, key)
    claude_tools: Any = [{"name": "send_email", "input_schema": SCHEMA}]
    kwargs = {"tools": claude_tools} if tools else {}
    claude_messages: Any = [{"role": "user", "content": prompt}]
    if stream:
        with claude.messages.stream(model="scripted-small", max_tokens=100, messages=claude_messages, **kwargs) as s:
            result = s.get_final_message()
    else:
        result = claude.messages.create(model="scripted-small", max_tokens=100, messages=claude_messages, **kwargs)
    text = "".join(b.text for b in result.content if b.type == "text")
    return text, [(b.name, b.input) for b in result.content if b.type == "tool_use"]


APIS = [(api, stream) for api in ("chat", "responses", "anthropic") for stream in (False, True)]
IDS = [f"{api}-{'stream' if stream else 'json'}" for api, stream in APIS]


@pytest.mark.parametrize(("api", "stream"), APIS, ids=IDS)
def test_the_model_sees_no_raw_pii_and_the_agent_gets_its_values_back(stack: Stack, api: str, stream: bool) -> None:
    stack.clear()
    text, _ = ask(stack.proxy, stack.key, api, stream, PROMPT)
    (seen,) = stack.upstream_requests()
    body = json.dumps(seen["body"])
    assert not any(value in body for value in RAW)
    assert "<PERSON_1>" in body and "<EMAIL_ADDRESS_1>" in body and "<US_SSN>" in body
    assert "***************1111" in body
    # The echo comes back with the pseudonyms restored; redacted and masked values stay so.
    assert text == (
        f"Scripted reply to: I am {NAME}. My email is {EMAIL} and my SSN is <US_SSN>; "
        "charge card ***************1111 please."
    )


INTERNATIONAL = {
    "PHONE_NUMBER": ["07700 900123", "+33 1 42 68 53 00", "030 12345678", "06-82237745"],
    "PERSON": [NAME],
    "LOCATION": ["London"],
    "AGE": ["42 years old"],
    "DATE_OF_BIRTH": ["14 March 1983"],
    "UK_POSTCODE": ["SW1A 2AA"],
    "CREDIT_CARD": ["2223 0031 2200 3222"],
}
INTERNATIONAL_PROMPT = (
    f"Ring {NAME} on 07700 900123 or +33 1 42 68 53 00, the Berlin desk on 030 12345678, Utrecht on "
    "06-82237745. She is 42 years old, born on 14 March 1983, and lives at 10 Downing Street, London "
    "SW1A 2AA. Her Mastercard is 2223 0031 2200 3222."
)


@pytest.mark.parametrize(("api", "stream"), APIS, ids=IDS)
def test_international_phones_names_addresses_ages_and_cards_do_not_reach_the_model(
    stack: Stack, api: str, stream: bool
) -> None:
    stack.clear()
    text, _ = ask(stack.proxy, stack.key, api, stream, INTERNATIONAL_PROMPT)
    body = json.dumps(stack.upstream_requests(), ensure_ascii=False)
    assert [v for values in INTERNATIONAL.values() for v in values if v in body] == []
    assert "<PHONE_NUMBER_4>" in body and "<AGE_1>" in body and "<UK_POSTCODE_1>" in body
    # Pseudonyms come back as the values; the card stays masked.
    assert "Berlin desk on 030 12345678" in text and "born on 14 March 1983" in text and "SW1A 2AA" in text
    assert "************3222" in text


def test_cloud_keys_are_blocked(stack: Stack) -> None:
    stack.clear()
    with pytest.raises(openai.PermissionDeniedError, match="STRIPE_KEY"):
        ask(stack.proxy, stack.key, "chat", True, "charge with sk_live_4eC39HqLyjWDarjtT1zdp7dc now")
    assert stack.upstream_requests() == []


@pytest.mark.parametrize(("api", "stream"), APIS, ids=IDS)
def test_tool_calls_the_model_emits_get_the_original_arguments(stack: Stack, api: str, stream: bool) -> None:
    stack.clear()
    prompt = f'Please call send_email {{"to": "{EMAIL}", "subject": "hello"}}'
    text, calls = ask(stack.proxy, stack.key, api, stream, prompt, tools=True)
    # Decided by policy on the original (company-mail-only allows @example.com) and restored for the agent.
    assert calls == [("send_email", {"to": EMAIL, "subject": "hello"})], text
    assert EMAIL not in json.dumps(stack.upstream_requests())


@pytest.mark.parametrize("api", ["chat", "responses", "anthropic"])
def test_an_entity_split_across_streamed_chunks_is_redacted(stack: Stack, api: str) -> None:
    stack.clear()
    # agent-2 may send phone numbers (request: allow), but they are redacted in answers.
    text, _ = ask(stack.proxy, stack.key2, api, True, f"Call me on {PHONE} tomorrow at noon")
    assert PHONE in json.dumps(stack.upstream_requests())  # the model echoes it, in word-sized pieces
    assert text == "Scripted reply to: Call me on <PHONE_NUMBER> tomorrow at noon"


def test_the_same_value_keeps_its_placeholder_across_turns(stack: Stack) -> None:
    stack.clear()
    client = openai_client(stack.proxy, stack.key)
    messages: Any = [{"role": "user", "content": f"I am {EMAIL}"}]
    first = client.chat.completions.create(model="scripted-small", messages=messages).choices[0].message.content
    assert first == f"Scripted reply to: I am {EMAIL}"
    messages += [
        {"role": "assistant", "content": first},
        {"role": "user", "content": f"Also {EMAIL} and bob@example.com"},
    ]
    second = client.chat.completions.create(model="scripted-small", messages=messages).choices[0].message.content
    assert second == f"Scripted reply to: Also {EMAIL} and bob@example.com"
    later = stack.upstream_requests()[-1]["body"]["messages"]
    assert [m["content"] for m in later] == [
        "I am <EMAIL_ADDRESS_1>",
        "Scripted reply to: I am <EMAIL_ADDRESS_1>",
        "Also <EMAIL_ADDRESS_1> and <EMAIL_ADDRESS_2>",
    ]


def test_a_name_found_once_is_replaced_everywhere_and_in_later_turns(stack: Stack) -> None:
    stack.clear()
    client = openai_client(stack.proxy, stack.key)
    messages: Any = [{"role": "user", "content": f"My name is {NAME} but everyone calls me Maria"}]
    first = client.chat.completions.create(model="scripted-small", messages=messages).choices[0].message.content
    assert first == f"Scripted reply to: My name is {NAME} but everyone calls me Maria"
    messages += [{"role": "assistant", "content": first}, {"role": "user", "content": "Gonzalez is fine too"}]
    client.chat.completions.create(model="scripted-small", messages=messages)
    seen = json.dumps([r["body"] for r in stack.upstream_requests()])
    assert "Maria" not in seen and "Gonzalez" not in seen


def test_a_blocked_type_refuses_the_call(stack: Stack) -> None:
    stack.clear()
    with pytest.raises(openai.PermissionDeniedError, match="AWS_ACCESS_KEY") as raised:
        ask(stack.proxy, stack.key, "chat", False, f"use {AWS_KEY} to deploy")
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "pii_blocked"
    with pytest.raises(anthropic.PermissionDeniedError, match="AWS_ACCESS_KEY"):
        ask(stack.proxy, stack.key, "anthropic", True, f"use {AWS_KEY} to deploy")
    assert stack.upstream_requests() == []


@pytest.mark.parametrize("api", ["chat", "responses", "anthropic"])
def test_a_type_blocked_in_answers_refuses_the_answer(stack: Stack, api: str) -> None:
    prompt = "the server 203.0.113.77 is down again"  # allowed out, blocked back: the echo carries it
    errors = (openai.APIError, anthropic.APIError)
    with pytest.raises(errors, match="PII policy") as raised:
        ask(stack.proxy, stack.key, api, False, prompt)
    assert getattr(raised.value, "status_code", None) == 403
    with pytest.raises(errors, match="PII policy"):
        ask(stack.proxy, stack.key, api, True, prompt)


def test_a_failed_analysis_fails_closed_unless_the_route_fails_open(stack: Stack) -> None:
    stack.clear()
    with pytest.raises(openai.InternalServerError, match="could not check this request") as raised:
        ask(stack.failing_proxy, stack.key, "chat", False, f"fresh text for {EMAIL}")
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "pii_check_failed"
    with pytest.raises(openai.APIStatusError, match="could not check"):
        ask(stack.failing_proxy, stack.key, "chat", True, f"fresh streamed text for {EMAIL}")
    assert stack.upstream_requests() == []
    # The anthropic route is configured to fail open: it passes, and that is recorded.
    text, _ = ask(stack.failing_proxy, stack.key, "anthropic", False, "fail open please")
    assert text == "Scripted reply to: fail open please"
    (seen,) = stack.upstream_requests()
    trace_id = seen["headers"]["traceparent"].split("-")[1]
    assert spans(stack, trace_id)[0]["attributes"]["bastion.pii.failed_open"] in ("true", True)


def spans(stack: Stack, trace_id: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while not (found := httpx.get(auth=AUTH, url=f"{stack.collector}/api/traces/{trace_id}").json().get("spans")):
        assert time.monotonic() < deadline, "the call's span never arrived"
        time.sleep(0.3)
    return list(found)


def test_the_store_holds_counts_never_values(stack: Stack) -> None:
    stack.clear()
    ask(stack.proxy, stack.key, "chat", False, PROMPT)
    (seen,) = stack.upstream_requests()
    trace_id = seen["headers"]["traceparent"].split("-")[1]
    attributes = spans(stack, trace_id)[0]["attributes"]
    assert int(attributes["bastion.pii.request.EMAIL_ADDRESS"]) == 1
    assert int(attributes["bastion.pii.request.US_SSN"]) == 1
    assert int(attributes["bastion.pii.request.CREDIT_CARD"]) == 1
    items = httpx.get(auth=AUTH, url=f"{stack.collector}/api/audit", params={"limit": 500}).json()["items"]
    assert len(items) > 10
    stored = json.dumps(items) + "".join(
        json.dumps(httpx.get(auth=AUTH, url=f"{stack.collector}/api/traces/{t}").json())
        for t in {i["trace_id"] for i in items}
    )
    assert not any(value in stored for value in RAW)


MCP_CALLS: list[dict[str, Any]] = [
    {"name": "send_money", "arguments": {"amount": 50, "recipient": "alice@example.com"}},
    # The tool echoes the city into its answer and its log message; IP addresses may not come back.
    {"name": "get_weather", "arguments": {"city": "203.0.113.77"}},
]


@pytest.mark.parametrize("client", ["mcp2", "mcp1"])
def test_mcp_tool_calls_are_redacted_both_ways(stack: Stack, client: str) -> None:
    httpx.delete(f"{stack.tools}/_tool_server/calls")
    url = f"{stack.proxy}/mcp/tools"
    seen = (
        asyncio.run(mcp2_session(url, stack.key, MCP_CALLS))
        if client == "mcp2"
        else mcp1_session(url, stack.key, MCP_CALLS)
    )
    payment, weather = seen["calls"]
    # Decided by policy on the original recipient; the tool server got a label, and so did the agent.
    received = httpx.get(f"{stack.tools}/_tool_server/calls").json()
    assert [c["arguments"] for c in received] == [
        {"amount": 50, "recipient": "<EMAIL_ADDRESS>"},
        {"city": "203.0.113.77"},
    ]
    assert payment["result"]["text"].endswith("50.00 USD sent to <EMAIL_ADDRESS>")
    assert weather["error"]["code"] == mcp.POLICY_DENIED and "IP_ADDRESS" in weather["error"]["message"]
    if client == "mcp1":  # the SSE answer's log notification held the address too
        assert seen["logs"] == []


@pytest.fixture
def pausing_proxy(stack: Stack, tmp_path: Path) -> Iterator[tuple[str, PausingServer, str]]:
    """A proxy with the main pii.yaml (MCP enforced) in front of a tool server that pauses mid-answer."""
    with pausing_server() as server:
        ports = free_ports(2)
        env = {
            **processes.routes_env(stack.model, tmp_path / "keys.yaml", stack.collector),
            "BASTION_MCP_TOOLS_URL": f"{server.url}/mcp",
        }
        key = create_key(tmp_path / "keys.yaml", "agent-1")
        with processes.proxy(tmp_path, "pausing", ports, env, policies(tmp_path, "pausing", PII_YAML)) as proxy:
            processes.ready(proxy)
            yield f"{proxy.url}/mcp/tools", server, key


def test_an_mcp_progress_notification_reaches_the_agent_while_the_server_pauses(
    pausing_proxy: tuple[str, PausingServer, str],
) -> None:
    url, server, key = pausing_proxy
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "get_weather", "arguments": {}}}
    headers = {
        "authorization": f"Bearer {key}",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "get_weather",
    }
    messages, during_pause = [], []
    with httpx.stream("POST", url, json=call, headers=headers, timeout=30) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: "):
                messages.append(json.loads(line[6:]))
                during_pause.append(not server.answered.is_set())
                server.release.set()  # the server answers once the agent has seen the notification
    assert [m.get("method") for m in messages] == ["notifications/progress", None]
    assert messages[0]["params"]["message"] == PROGRESS and messages[1]["result"]["content"][0]["text"]
    assert during_pause[0], "the notification was held until the server answered"
