"""End to end: Google Gemini's native API through `bastion proxy`, driven by the official `google-genai`
SDK against the scripted model, JSON and streamed: model policy, tool calls the model emits, offered
tools, PII both ways, usage on the span, and the key handling (Bastion key in, provider key out)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.genai import errors, types

from factories import clients, processes
from factories.processes import PROVIDER_KEY
from support import AUTH, copy_policies, create_key, free_ports

EMAIL = "alice.w@example.com"
SSN = "536-22-8954"
PII_YAML = """
entities:
  EMAIL_ADDRESS: pseudonymize
  US_SSN: redact
  IP_ADDRESS: {request: allow, response: block}
"""
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "to": {"type": "string"}}}
OFFERED = ("get_weather", "send_email", "delete_user")
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

    def clear(self) -> None:
        httpx.delete(f"{self.model}/_scripted/requests")


def policies(tmp: Path, name: str, on_deny: str) -> Path:
    target = tmp / f"policies-{name}"
    copy_policies(target)
    (target / "pii.yaml").write_text(PII_YAML)
    config = (target / "bastion.yaml").read_text()
    (target / "bastion.yaml").write_text(config.replace("on_deny: replace", f"on_deny: {on_deny}"))
    return target


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("gemini")
    model_port, collector_port, *proxy_ports = free_ports(6)
    key = create_key(tmp / "keys.yaml", "agent-1")
    env = processes.routes_env(processes.url(model_port), tmp / "keys.yaml", processes.url(collector_port))
    with (
        processes.scripted_model(tmp, model_port) as model,
        processes.collector(tmp, collector_port) as collector,
        processes.proxy(tmp, "replace", proxy_ports[:2], env, policies(tmp, "replace", "replace")) as replacing,
        processes.proxy(tmp, "block", proxy_ports[2:], env, policies(tmp, "block", "block")) as blocking,
    ):
        processes.ready(model, collector, replacing, blocking)
        yield Stack(model.url, replacing.url, blocking.url, collector.url, key)


def tools() -> list[types.Tool]:
    declarations = [types.FunctionDeclaration(name=n, parameters_json_schema=SCHEMA) for n in OFFERED]
    return [types.Tool(function_declarations=declarations)]


def ask(
    base: str, key: str, prompt: str, stream: bool, model: str = "scripted-small", offer: bool = False
) -> tuple[str, list[tuple[str, Any]], types.GenerateContentResponse]:
    """One turn: the text the agent receives, the function calls (name, args), and the last response."""
    client = clients.gemini_client(f"{base}/gemini", key)
    config = types.GenerateContentConfig(
        tools=tools() if offer else None,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    if stream:
        chunks = list(client.models.generate_content_stream(model=model, contents=prompt, config=config))
        parts = [
            p
            for c in chunks
            for cand in c.candidates or []
            for p in (cand.content.parts if cand.content else None) or []
        ]
        last = chunks[-1]
    else:
        last = client.models.generate_content(model=model, contents=prompt, config=config)
        parts = [p for cand in last.candidates or [] for p in (cand.content.parts if cand.content else None) or []]
    text = "".join(p.text for p in parts if p.text)
    calls = [(p.function_call.name, p.function_call.args) for p in parts if p.function_call]
    return text, calls, last


def spans(stack: Stack, trace_id: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while not (found := httpx.get(auth=AUTH, url=f"{stack.collector}/api/traces/{trace_id}").json().get("spans")):
        assert time.monotonic() < deadline, "the call's span never arrived"
        time.sleep(0.3)
    return list(found)


MODES = [False, True]
IDS = ["json", "stream"]


@pytest.mark.parametrize("stream", MODES, ids=IDS)
def test_an_allowed_model_answers_and_usage_reaches_the_span(stack: Stack, stream: bool) -> None:
    stack.clear()
    text, _, last = ask(stack.proxy, stack.key, "hello there", stream)
    assert text == "Scripted reply to: hello there"
    assert last.usage_metadata is not None and last.usage_metadata.candidates_token_count == 5
    (seen,) = stack.upstream_requests()
    method = "streamGenerateContent" if stream else "generateContent"
    assert seen["path"].endswith(f"/models/scripted-small:{method}")
    # The Bastion key stayed in Bastion; the provider's key went upstream in Gemini's header.
    assert seen["headers"]["x-goog-api-key"] == PROVIDER_KEY and stack.key not in json.dumps(seen)
    attributes = spans(stack, seen["headers"]["traceparent"].split("-")[1])[0]["attributes"]
    assert attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert attributes["gen_ai.request.model"] == "scripted-small"
    assert str(attributes["gen_ai.request.stream"]).lower() == str(stream).lower()
    assert int(attributes["gen_ai.usage.input_tokens"]) == 2
    assert int(attributes["gen_ai.usage.output_tokens"]) == 5
    assert "STOP" in str(attributes["gen_ai.response.finish_reasons"])


@pytest.mark.parametrize("stream", MODES, ids=IDS)
def test_a_denied_model_is_refused_in_geminis_error_format(stack: Stack, stream: bool) -> None:
    stack.clear()
    with pytest.raises(errors.ClientError) as raised:
        ask(stack.proxy, stack.key, "hello", stream, model="scripted-large")
    assert raised.value.code == 403 and raised.value.status == "PERMISSION_DENIED"
    assert "no-large-models" in str(raised.value.message)
    assert stack.upstream_requests() == []


def test_the_key_in_the_query_is_the_bastion_key_and_never_goes_upstream(stack: Stack) -> None:
    stack.clear()
    url = f"{stack.proxy}/gemini/v1beta/models/scripted-small:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    answer = httpx.post(url, params={"key": stack.key}, json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    (seen,) = stack.upstream_requests()
    assert seen["query"] == "" and seen["headers"]["x-goog-api-key"] == PROVIDER_KEY
    refused = httpx.post(url, params={"key": "bst_wrong"}, json=body, timeout=30)
    assert refused.status_code == 401 and refused.json()["error"]["status"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("stream", MODES, ids=IDS)
def test_an_emitted_call_the_policy_denies_is_replaced_by_an_explanation(stack: Stack, stream: bool) -> None:
    stack.clear()
    prompt = 'Please call send_email {"to": "x@evil.com"}'
    text, calls, _ = ask(stack.proxy, stack.key, prompt, stream, offer=True)
    assert calls == [] and EXPLANATION in text and "company-mail-only" in text
    allowed, calls, _ = ask(stack.proxy, stack.key, 'Please call get_weather {"city": "Paris"}', stream, offer=True)
    assert calls == [("get_weather", {"city": "Paris"})], allowed


@pytest.mark.parametrize("stream", MODES, ids=IDS)
def test_an_emitted_call_the_policy_denies_blocks_the_answer_when_configured(stack: Stack, stream: bool) -> None:
    with pytest.raises(errors.APIError) as raised:
        ask(stack.blocking_proxy, stack.key, 'Please call send_email {"to": "x@evil.com"}', stream, offer=True)
    assert "company-mail-only" in str(raised.value.message)


def test_tools_the_agent_may_not_call_are_not_offered(stack: Stack) -> None:
    stack.clear()
    ask(stack.proxy, stack.key, "hello", False, offer=True)
    (seen,) = stack.upstream_requests()
    offered = [d["name"] for t in seen["body"]["tools"] for d in t["functionDeclarations"]]
    assert offered == ["get_weather", "send_email"]


@pytest.mark.parametrize("stream", MODES, ids=IDS)
def test_the_model_sees_no_raw_pii_and_the_agent_gets_its_values_back(stack: Stack, stream: bool) -> None:
    stack.clear()
    text, _, _ = ask(stack.proxy, stack.key, f"My email is {EMAIL} and my SSN is {SSN}.", stream)
    (seen,) = stack.upstream_requests()
    body = json.dumps(seen["body"])
    assert EMAIL not in body and SSN not in body and "<EMAIL_ADDRESS_1>" in body and "<US_SSN>" in body
    assert text == f"Scripted reply to: My email is {EMAIL} and my SSN is <US_SSN>."


@pytest.mark.parametrize("stream", MODES, ids=IDS)
def test_function_call_arguments_are_restored_for_the_agent(stack: Stack, stream: bool) -> None:
    stack.clear()
    text, calls, _ = ask(stack.proxy, stack.key, f'Please call send_email {{"to": "{EMAIL}"}}', stream, offer=True)
    # Decided on the original (company-mail-only allows @example.com) and restored for the agent.
    assert calls == [("send_email", {"to": EMAIL})], text
    assert EMAIL not in json.dumps(stack.upstream_requests())


def test_a_function_response_is_redacted_before_the_model_sees_it(stack: Stack) -> None:
    stack.clear()
    client = clients.gemini_client(f"{stack.proxy}/gemini", stack.key)
    contents = [
        types.Content(role="user", parts=[types.Part(text="Please look up the customer")]),
        types.Content(role="model", parts=[types.Part(function_call=types.FunctionCall(name="get_weather", args={}))]),
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name="get_weather", response={"owner": f"SSN {SSN}"})],
        ),
    ]
    answer = client.models.generate_content(model="scripted-small", contents=contents)
    assert SSN not in json.dumps(stack.upstream_requests())
    assert "<US_SSN>" in (answer.text or "")


def test_a_stream_asked_for_without_sse_is_governed_as_a_json_array(stack: Stack) -> None:
    url = f"{stack.proxy}/gemini/v1beta/models/scripted-small:streamGenerateContent"
    prompt = 'Please call send_email {"to": "x@evil.com"}'
    declarations = [{"name": n, "parametersJsonSchema": SCHEMA} for n in OFFERED]
    body = {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "tools": [{"functionDeclarations": declarations}],
    }
    answer = httpx.post(url, headers={"x-goog-api-key": stack.key}, json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    parts = [p for chunk in answer.json() for c in chunk["candidates"] for p in c["content"]["parts"]]
    assert not any("functionCall" in p for p in parts) and EXPLANATION in parts[0]["text"]


@pytest.mark.parametrize("stream", MODES, ids=IDS)
def test_an_answer_holding_a_type_blocked_in_answers_is_refused(stack: Stack, stream: bool) -> None:
    with pytest.raises(errors.APIError) as raised:
        ask(stack.proxy, stack.key, "Echo 203.0.113.77 back", stream)
    assert "IP_ADDRESS" in str(raised.value.message) or "personal data" in str(raised.value.message)
