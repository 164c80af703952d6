"""Gemini's native API: recognition by path, function calls decided in JSON and streamed answers,
offered function declarations, PII channels in streams, usage, errors and the conversation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bastion.proxy import formats
from bastion.proxy.formats import gemini
from bastion.proxy.formats.gemini import FORMAT, Rewriter, govern
from bastion.proxy.pii.redactor import Conversation
from bastion.proxy.pii.streams import StreamRedactor
from bastion.proxy.usage import Usage
from factories.toolcalls import ALLOWED_WEATHER, CHUNK_SIZES, DENIED_EMAIL, engine, events, judge, run

Call = tuple[str, Any]


def answer(*parts: dict[str, Any], finish: str | None = "STOP") -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4}}


def call(tool: Call) -> dict[str, Any]:
    return {"functionCall": {"name": tool[0], "args": tool[1]}}


def stream(*chunks: dict[str, Any]) -> bytes:
    """As Google writes it: each event ends with a CRLF blank line."""
    return b"".join(f"data: {json.dumps(c)}\r\n\r\n".encode() for c in chunks)


@pytest.mark.parametrize(
    ("path", "model", "streams"),
    [
        ("/v1beta/models/gemini-2.5-flash:generateContent", "gemini-2.5-flash", False),
        ("/v1/models/scripted-small:streamGenerateContent?alt=sse", "scripted-small", True),
    ],
)
def test_a_call_is_recognised_and_its_model_read_from_the_path(path: str, model: str, streams: bool) -> None:
    assert formats.recognise("gemini", "POST", path.split("?")[0]) is FORMAT
    assert (FORMAT.model({}, path), FORMAT.streams({"stream": not streams}, path)) == (model, streams)
    assert formats.recognise("gemini", "GET", path.split("?")[0]) is None
    assert formats.recognise("gemini", "POST", "/v1beta/models/m:countTokens") is None


def test_a_denied_function_call_becomes_an_explanation(tmp_path: Path) -> None:
    body = answer(call(ALLOWED_WEATHER), call(DENIED_EMAIL))
    verdicts = govern(body, judge(tmp_path))
    assert [v.allowed for v in verdicts] == [True, False]
    parts = body["candidates"][0]["content"]["parts"]
    assert parts[0] == call(ALLOWED_WEATHER) and "company-mail-only" in parts[1]["text"]


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize("block", [False, True])
def test_a_streamed_call_is_decided_in_its_event(tmp_path: Path, size: int | None, block: bool) -> None:
    upstream = stream(answer({"text": "Sure"}, finish=None), answer(call(DENIED_EMAIL)))
    got = events(run(Rewriter(judge(tmp_path), block), upstream, size))
    assert got[0][1] == answer({"text": "Sure"}, finish=None)
    error = got[1][1].get("error")
    if block:
        assert len(got) == 2 and error["status"] == "PERMISSION_DENIED" and "company-mail-only" in error["message"]
    else:
        assert error is None and "company-mail-only" in got[1][1]["candidates"][0]["content"]["parts"][0]["text"]
    allowed = stream(answer(call(ALLOWED_WEATHER)))
    assert run(Rewriter(judge(tmp_path), block), allowed, size) == allowed


def test_function_declarations_the_agent_may_not_call_are_removed(tmp_path: Path) -> None:
    policy = engine(tmp_path)

    def visible(name: str) -> bool:
        return policy.visible("a", "assistant", f"tool:{name}", "call")

    functions = [{"name": "get_weather"}, {"name": "delete_user"}]
    body = {"contents": [], "tools": [{"functionDeclarations": functions}, {"googleSearch": {}}]}
    result = FORMAT.offered_tools(json.dumps(body), body, visible)
    assert result.hidden == ["delete_user"] and result.forced is None and result.text is not None
    assert json.loads(result.text)["tools"] == [
        {"functionDeclarations": [{"name": "get_weather"}]},
        {"googleSearch": {}},
    ]
    only = {"name": "delete_user"}
    forced = {
        "tools": [{"functionDeclarations": [only]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["delete_user"]}},
    }
    assert FORMAT.offered_tools(json.dumps(forced), forced, visible).forced == "delete_user"


def test_streamed_text_is_restored_across_events_and_in_function_call_args() -> None:
    conversation = Conversation()
    placeholder = conversation.placeholder("EMAIL_ADDRESS", "alice@example.com")
    redactor = StreamRedactor(FORMAT, lambda t, js: conversation.restore(t, js), None, 32)
    upstream = stream(
        answer({"text": f"mail {placeholder[:5]}"}, finish=None),
        answer({"text": f"{placeholder[5:]} now"}, call(("send_email", {"to": placeholder}))),
    )
    got = events(b"".join(redactor(upstream) + redactor(b"")))
    parts = [p for _, data in got for p in data["candidates"][0]["content"]["parts"]]
    assert "".join(p.get("text", "") for p in parts) == "mail alice@example.com now"
    assert call(("send_email", {"to": "alice@example.com"})) in parts


def test_usage_errors_and_the_conversation() -> None:
    usage = Usage()
    FORMAT.read_usage(usage, {**answer({"text": "x"}), "modelVersion": "g-1", "responseId": "r1"})
    assert (usage.input_tokens, usage.output_tokens, usage.response_model, usage.response_id) == (3, 4, "g-1", "r1")
    assert usage.finish_reasons == ["STOP"]
    error = gemini.error_body(403, "no", "policy_denied")["error"]
    assert (error["code"], error["status"], error["details"][0]["reason"]) == (
        403,
        "PERMISSION_DENIED",
        "policy_denied",
    )
    body = {"systemInstruction": {"parts": [{"text": "s"}]}, "contents": [{"role": "user", "parts": [{"text": "u"}]}]}
    assert FORMAT.first_user_text(body) == "u"
    assert FORMAT.last_messages(body, 1) == [{"role": "user", "content": [{"text": "u"}]}]
    assert FORMAT.with_guidance is not None
    guided = FORMAT.with_guidance(body, "stop")
    assert guided is not None and guided["systemInstruction"]["parts"][1]["text"].endswith("stop")


def test_an_array_of_answers_is_governed_answer_by_answer(tmp_path: Path) -> None:
    body = [answer({"text": "Sure"}, finish=None), answer(call(DENIED_EMAIL))]
    verdicts = [v for each in FORMAT.answers(body) for v in govern(each, judge(tmp_path))]
    assert [v.allowed for v in verdicts] == [False]
    assert "company-mail-only" in body[1]["candidates"][0]["content"]["parts"][0]["text"]
    usage = Usage()
    FORMAT.read_usage(usage, body)
    assert (usage.input_tokens, usage.output_tokens) == (3, 4)
