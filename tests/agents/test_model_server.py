"""The scripted model server, driven by the official openai, anthropic and google-genai SDKs over a real socket."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google.genai import types

from factories import clients

OPENAI_KEY = "sk-provider-openai"
ANTHROPIC_KEY = "sk-ant-provider"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CHAT_TOOLS: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]
RESPONSES_TOOLS: Any = [{"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA}]
ANTHROPIC_TOOLS: Any = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
ASK_WEATHER = 'What is the weather? Please call get_weather {"city": "Paris"}'


@pytest.fixture
def base(server: str) -> str:
    httpx.delete(f"{server}/_scripted/requests").raise_for_status()
    return server


@pytest.fixture
def oai(base: str) -> openai.OpenAI:
    return clients.openai_client(f"{base}/v1", OPENAI_KEY)


@pytest.fixture
def claude(base: str) -> anthropic.Anthropic:
    return clients.anthropic_client(base, ANTHROPIC_KEY)


def recorded(base: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = httpx.get(f"{base}/_scripted/requests").json()
    return result


# OpenAI chat completions


def test_chat_completion(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model="scripted-small", messages=[{"role": "user", "content": "hello there"}])
    assert r.model == "scripted-small"
    assert r.choices[0].message.content == "Scripted reply to: hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (2, 5)


def test_chat_is_deterministic(oai: openai.OpenAI) -> None:
    ask = [{"role": "user", "content": "same question"}]
    first = oai.chat.completions.create(model="scripted-small", messages=ask)  # type: ignore[arg-type]
    second = oai.chat.completions.create(model="scripted-small", messages=ask)  # type: ignore[arg-type]
    assert first.id == second.id
    assert first.choices[0].message.content == second.choices[0].message.content


def test_chat_stream_with_usage(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="scripted-small",
        messages=[{"role": "user", "content": "tell me a short story please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 3
    assert "".join(pieces) == "Scripted reply to: tell me a short story please"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_chat_stream_without_usage_option_sends_no_usage(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_chat_tool_call_then_result(oai: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": ASK_WEATHER}]
    r = oai.chat.completions.create(model="scripted-small", messages=messages, tools=CHAT_TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
    ]
    final = oai.chat.completions.create(model="scripted-small", messages=messages, tools=CHAT_TOOLS)
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "Tool result received: Sunny, 21 C"


def test_a_runaway_model_asks_for_the_same_call_after_every_result(oai: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": 'Keep calling get_weather {"city": "Paris"}'}]
    for _ in range(3):
        r = oai.chat.completions.create(model="scripted-small", messages=messages, tools=CHAT_TOOLS)
        calls = r.choices[0].message.tool_calls
        assert calls is not None and calls[0].function.name == "get_weather"
        assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
        messages += [
            r.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny"},
        ]


def test_the_failing_model_answers_500_in_each_api(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    with pytest.raises(openai.InternalServerError) as e:
        oai.with_options(max_retries=0).chat.completions.create(
            model="scripted-failing", messages=[{"role": "user", "content": "hi"}]
        )
    assert e.value.status_code == 500
    with pytest.raises(anthropic.InternalServerError):
        claude.with_options(max_retries=0).messages.create(
            model="scripted-failing", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )


def test_chat_tool_call_streams_arguments_in_pieces(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="scripted-small",
        messages=[{"role": "user", "content": ASK_WEATHER}],
        tools=CHAT_TOOLS,
        stream=True,
    )
    deltas = [c.choices[0].delta for c in stream]
    calls = [d.tool_calls[0] for d in deltas if d.tool_calls]
    assert calls[0].function is not None and calls[0].function.name == "get_weather"
    pieces = [c.function.arguments for c in calls[1:] if c.function and c.function.arguments]
    assert len(pieces) >= 2
    assert json.loads("".join(pieces)) == {"city": "Paris"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call get_weather", {"city": "scripted"}),
        ("Please CALL `get_weather` now", {"city": "scripted"}),
        ("call get_weather {not json", {"city": "scripted"}),
    ],
)
def test_tool_arguments_default_to_placeholders(oai: openai.OpenAI, text: str, expected: dict[str, str]) -> None:
    r = oai.chat.completions.create(model="m", messages=[{"role": "user", "content": text}], tools=CHAT_TOOLS)
    calls = r.choices[0].message.tool_calls
    assert calls is not None
    assert json.loads(calls[0].function.arguments) == expected  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["call get_time", "get_weather please"])
def test_no_tool_call_without_a_matching_trigger(oai: openai.OpenAI, text: str) -> None:
    r = oai.chat.completions.create(model="m", messages=[{"role": "user", "content": text}], tools=CHAT_TOOLS)
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].message.content == f"Scripted reply to: {text}"


def test_no_tool_call_when_no_tools_offered(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model="m", messages=[{"role": "user", "content": ASK_WEATHER}])
    assert r.choices[0].message.tool_calls is None


# OpenAI Responses


def test_responses(oai: openai.OpenAI) -> None:
    r = oai.responses.create(model="scripted-small", input="hello responses")
    assert r.model == "scripted-small"
    assert r.output_text == "Scripted reply to: hello responses"
    assert r.usage is not None and (r.usage.input_tokens, r.usage.output_tokens) == (2, 5)


def test_responses_stream_events(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model="scripted-small", input="stream these words please", stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) >= 3
    assert "".join(deltas) == "Scripted reply to: stream these words please"
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage is not None and completed.response.usage.output_tokens == 7


def test_responses_stream_helper(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="scripted-small", input=[{"role": "user", "content": "helper"}]) as stream:
        final = stream.get_final_response()
    assert final.output_text == "Scripted reply to: helper"


def test_responses_function_call_then_output(oai: openai.OpenAI) -> None:
    r = oai.responses.create(model="scripted-small", input=ASK_WEATHER, tools=RESPONSES_TOOLS)
    call = r.output[0]
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    follow_up: Any = [
        {"role": "user", "content": ASK_WEATHER},
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "Rain"},
    ]
    final = oai.responses.create(model="scripted-small", input=follow_up, tools=RESPONSES_TOOLS)
    assert final.output_text == "Tool result received: Rain"


def test_responses_function_call_stream(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="m", input=ASK_WEATHER, tools=RESPONSES_TOOLS) as stream:
        deltas = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert len(deltas) >= 2
    assert json.loads("".join(deltas)) == {"city": "Paris"}
    assert final.output[0].type == "function_call"


# OpenAI embeddings and models


def test_embeddings_are_deterministic_unit_vectors(oai: openai.OpenAI) -> None:
    first = oai.embeddings.create(model="scripted-embed", input=["alpha", "beta"])
    again = oai.embeddings.create(model="scripted-embed", input="alpha", encoding_format="float")
    assert first.model == "scripted-embed"
    alpha, beta = (d.embedding for d in first.data)
    assert len(alpha) == 16
    assert alpha != beta
    assert again.data[0].embedding == pytest.approx(alpha, abs=1e-6)
    assert sum(v * v for v in alpha) == pytest.approx(1.0, abs=1e-5)
    assert first.usage.prompt_tokens == 2


def test_embeddings_dimensions(oai: openai.OpenAI) -> None:
    r = oai.embeddings.create(model="scripted-embed", input="x", dimensions=64)
    assert len(r.data[0].embedding) == 64


def test_models(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    assert {"scripted-small", "scripted-large", "scripted-embed"} <= {m.id for m in oai.models.list()}
    assert "scripted-small" in {m.id for m in claude.models.list()}


# Anthropic messages


def test_anthropic_message(claude: anthropic.Anthropic) -> None:
    m = claude.messages.create(
        model="scripted-small", max_tokens=100, messages=[{"role": "user", "content": "hello claude"}]
    )
    assert m.model == "scripted-small"
    assert m.content[0].type == "text" and m.content[0].text == "Scripted reply to: hello claude"
    assert m.stop_reason == "end_turn"
    assert (m.usage.input_tokens, m.usage.output_tokens) == (2, 5)


def test_anthropic_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="scripted-small",
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "stream to me in pieces"}],
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) >= 3
    assert "".join(pieces) == "Scripted reply to: stream to me in pieces"
    assert final.usage.input_tokens == 7
    assert final.usage.output_tokens == 8


def test_anthropic_raw_stream_events(claude: anthropic.Anthropic) -> None:
    events = list(
        claude.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}], stream=True)
    )
    types = [e.type for e in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[0].type == "message_start" and events[0].message.usage.input_tokens == 1


def test_anthropic_tool_use_then_result(claude: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "user", "content": ASK_WEATHER}]
    m = claude.messages.create(model="scripted-small", max_tokens=100, messages=messages, tools=ANTHROPIC_TOOLS)
    assert m.stop_reason == "tool_use"
    block = m.content[0]
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("get_weather", {"city": "Paris"})
    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True)]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "Foggy"}]},
    ]
    final = claude.messages.create(model="scripted-small", max_tokens=100, messages=messages, tools=ANTHROPIC_TOOLS)
    assert final.stop_reason == "end_turn"
    assert final.content[0].type == "text" and final.content[0].text == "Tool result received: Foggy"


def test_anthropic_tool_use_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="m", max_tokens=100, messages=[{"role": "user", "content": ASK_WEATHER}], tools=ANTHROPIC_TOOLS
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    partials = [
        e.delta.partial_json for e in events if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert len(partials) >= 2
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Paris"}


# Recording, errors and streaming behaviour


def test_records_requests_with_headers_and_body(base: str, oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    oai.chat.completions.create(model="scripted-small", messages=[{"role": "user", "content": "one"}])
    claude.messages.create(model="scripted-small", max_tokens=5, messages=[{"role": "user", "content": "two"}])
    first, second = recorded(base)
    assert (first["method"], first["path"]) == ("POST", "/v1/chat/completions")
    assert first["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
    assert first["body"]["messages"] == [{"role": "user", "content": "one"}]
    assert second["path"] == "/v1/messages"
    assert second["headers"]["authorization"] == f"Bearer {ANTHROPIC_KEY}"
    assert "anthropic-version" in second["headers"]

    assert httpx.delete(f"{base}/_scripted/requests").status_code == 204
    assert recorded(base) == []


def test_malformed_json_is_a_400_in_each_format(base: str) -> None:
    r = httpx.post(f"{base}/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(f"{base}/v1/messages", content=b"[1, 2", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    assert [x["body"] for x in recorded(base)] == [None, None]


def test_missing_fields_raise_sdk_errors(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    with pytest.raises(openai.BadRequestError, match="messages"):
        oai.chat.completions.create(model="m", messages=[])
    with pytest.raises(openai.BadRequestError, match="input"):
        oai.embeddings.create(model="m", input=[])
    with pytest.raises(anthropic.BadRequestError, match="model"):
        claude.messages.create(model="", max_tokens=5, messages=[{"role": "user", "content": "x"}])


def test_unknown_path_is_recorded_and_404(base: str) -> None:
    r = httpx.post(f"{base}/v1/nowhere", json={"a": 1})
    assert r.status_code == 404
    assert recorded(base)[-1]["path"] == "/v1/nowhere"


def test_stream_arrives_in_several_writes(base: str) -> None:
    body = {
        "model": "m",
        "stream": True,
        "messages": [{"role": "user", "content": "one two three four five"}],
    }
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        reads = [chunk for chunk in r.iter_raw() if chunk]
    assert len(reads) >= 3
    assert b"".join(reads).endswith(b"data: [DONE]\n\n")


# Gemini generateContent / streamGenerateContent


def gemini_config(offer: bool = False) -> types.GenerateContentConfig:
    tools = [
        types.Tool(
            function_declarations=[types.FunctionDeclaration(name="get_weather", parameters_json_schema=WEATHER_SCHEMA)]
        )
    ]
    disable = types.AutomaticFunctionCallingConfig(disable=True)
    return types.GenerateContentConfig(tools=tools if offer else None, automatic_function_calling=disable)


def test_gemini_text_stream_and_function_call_then_response(base: str) -> None:
    client = clients.gemini_client(base, "provider-gemini-key")
    answer = client.models.generate_content(model="scripted-small", contents="hi there", config=gemini_config())
    assert answer.text == "Scripted reply to: hi there" and answer.usage_metadata is not None
    chunks = list(client.models.generate_content_stream(model="scripted-small", contents="hi there"))
    assert len(chunks) > 1 and "".join(c.text or "" for c in chunks) == "Scripted reply to: hi there"
    called = client.models.generate_content(model="scripted-small", contents=ASK_WEATHER, config=gemini_config(True))
    assert called.function_calls is not None and called.function_calls[0].args == {"city": "Paris"}
    contents = [
        types.Content(role="user", parts=[types.Part(text=ASK_WEATHER)]),
        types.Content(role="model", parts=[types.Part(function_call=called.function_calls[0])]),
        types.Content(
            role="user", parts=[types.Part.from_function_response(name="get_weather", response={"result": "sunny"})]
        ),
    ]
    result = client.models.generate_content(model="scripted-small", contents=contents, config=gemini_config(True))
    assert result.text == 'Tool result received: {"result": "sunny"}'
    (first, *_) = recorded(base)
    assert first["headers"]["x-goog-api-key"] == "provider-gemini-key"
    assert first["path"].endswith("/models/scripted-small:generateContent")


def test_gemini_errors_are_in_geminis_format(base: str) -> None:
    answer = httpx.post(f"{base}/v1beta/models/scripted-small:generateContent", json={"contents": []})
    assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    unknown = httpx.post(f"{base}/v1beta/models/scripted-small:countTokens", json={"contents": []})
    assert unknown.status_code == 404 and unknown.json()["error"]["status"] == "NOT_FOUND"
