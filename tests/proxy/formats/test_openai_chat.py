"""OpenAI chat completions: tool calls decided in JSON responses and in streamed chunks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bastion.proxy.formats.openai_chat import Rewriter, govern
from factories.toolcalls import (
    ALLOWED_EMAIL,
    ALLOWED_WEATHER,
    CHUNK_SIZES,
    DENIED_DELETE,
    DENIED_EMAIL,
    REVIEW_MONEY,
    Event,
    events,
    judge,
    run,
    sse,
)

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "scripted-small"}
Call = tuple[str, Any]


def arguments_text(args: Any) -> str:
    return args if isinstance(args, str) else json.dumps(args)


def thirds(text: str) -> list[str]:
    n = len(text)
    return [p for p in (text[: n // 3], text[n // 3 : 2 * n // 3], text[2 * n // 3 :]) if p]


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    return {**HEAD, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def call_chunks(calls: list[Call], choice: int = 0) -> list[dict[str, Any]]:
    items = []
    for i, (name, args) in enumerate(calls):
        start = {"index": i, "id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": ""}}
        items.append(chunk({"tool_calls": [start]}, index=choice))
        items += [
            chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]}, index=choice)
            for p in thirds(arguments_text(args))
        ]
    return items


def stream(calls: list[Call], text: str | None = None, usage: bool = False) -> bytes:
    items = [chunk({"role": "assistant", "content": "" if text else None})]
    items += [chunk({"content": p}) for p in thirds(text or "")]
    items += call_chunks(calls)
    items.append(chunk({}, "tool_calls" if calls else "stop"))
    if usage:
        items.append({**HEAD, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    return sse(*items, "[DONE]")


def completion(calls: list[Call], text: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": arguments_text(a)}}
            for i, (n, a) in enumerate(calls)
        ]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls" if calls else "stop"}
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": "scripted-small", "choices": [choice]}


def accumulate(found: list[Event]) -> list[dict[str, Any]]:
    """Each choice's message as the openai SDK assembles it from chunks (tool-call indexes must be dense)."""
    choices: dict[int, dict[str, Any]] = {}
    for _, data in found:
        if not isinstance(data, dict):
            continue
        assert "error" not in data
        for ch in data["choices"]:
            acc = choices.setdefault(ch["index"], {"content": "", "tool_calls": [], "finish_reason": None})
            delta = ch["delta"]
            acc["content"] += delta.get("content") or ""
            for tc in delta.get("tool_calls") or []:
                assert tc["index"] <= len(acc["tool_calls"]), "tool-call indexes must not skip"
                if tc["index"] == len(acc["tool_calls"]):
                    acc["tool_calls"].append({"id": "", "name": "", "arguments": ""})
                entry, function = acc["tool_calls"][tc["index"]], tc.get("function") or {}
                entry["id"] += tc.get("id", "")
                entry["name"] += function.get("name", "")
                entry["arguments"] += function.get("arguments", "")
            acc["finish_reason"] = ch.get("finish_reason") or acc["finish_reason"]
    return [choices[k] for k in sorted(choices)]


# (case, calls, text before them, calls kept, finish_reason, tools explained)
CASES = [
    ("allowed", [ALLOWED_WEATHER], None, ["get_weather"], "tool_calls", []),
    ("denied", [DENIED_EMAIL], None, [], "stop", ["send_email"]),
    ("denied after text", [DENIED_DELETE], "Deleting now.", [], "stop", ["delete_user"]),
    ("review", [REVIEW_MONEY], None, [], "stop", ["send_money"]),
    ("denied first of two", [DENIED_EMAIL, ALLOWED_WEATHER], "Sure.", ["get_weather"], "tool_calls", ["send_email"]),
    (
        "denied between",
        [ALLOWED_WEATHER, DENIED_DELETE, ALLOWED_EMAIL],
        None,
        ["get_weather", "send_email"],
        "tool_calls",
        ["delete_user"],
    ),
    ("unparsable", [("get_weather", '{"city": "Par')], None, [], "stop", ["get_weather"]),
]
IDS = [c[0] for c in CASES]


def check(
    message: dict[str, Any], calls: list[Call], text: str | None, kept: list[str], finish: str, explained: list[str]
) -> None:
    assert [c["function"]["name"] if "function" in c else c["name"] for c in message.get("tool_calls") or []] == kept
    for call in message.get("tool_calls") or []:
        name = call["function"]["name"] if "function" in call else call["name"]
        arguments = call["function"]["arguments"] if "function" in call else call["arguments"]
        assert arguments == arguments_text(dict(calls)[name])
    content = message.get("content") or ""
    assert content.startswith(f"{text}\n\nBastion" if text and explained else text or "")
    for name in explained:
        assert f"Bastion blocked the model's call of tool '{name}'" in content
    if not explained:
        assert "Bastion" not in content
    assert message["finish_reason"] == finish


@pytest.mark.parametrize(("case", "calls", "text", "kept", "finish", "explained"), CASES, ids=IDS)
def test_json_response(
    tmp_path: Path, case: str, calls: list[Call], text: str | None, kept: list[str], finish: str, explained: list[str]
) -> None:
    body = completion(calls, text)
    original = copy.deepcopy(body)
    verdicts = govern(body, judge(tmp_path))
    assert [v.call.name for v in verdicts] == [n for n, _ in calls]
    choice = body["choices"][0]
    check({**choice["message"], "finish_reason": choice["finish_reason"]}, calls, text, kept, finish, explained)
    if not explained:
        assert body == original
    assert ("tool_calls" in choice["message"]) == bool(kept)


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize(("case", "calls", "text", "kept", "finish", "explained"), CASES, ids=IDS)
def test_stream(
    tmp_path: Path,
    size: int | None,
    case: str,
    calls: list[Call],
    text: str | None,
    kept: list[str],
    finish: str,
    explained: list[str],
) -> None:
    upstream = stream(calls, text, usage=True)
    out = run(Rewriter(judge(tmp_path), block=False), upstream, size)
    if not explained:
        assert out == upstream  # the original bytes, not a copy
    found = events(out)
    assert found[-1] == ("message", "[DONE]") and found[-2][1]["usage"]["completion_tokens"] == 4
    (message,) = accumulate(found)
    check(message, calls, text, kept, finish, explained)
    assert out == run(Rewriter(judge(tmp_path), block=False), upstream, None)


def test_text_passes_before_a_tool_call_is_complete(tmp_path: Path) -> None:
    rewriter = Rewriter(judge(tmp_path), block=False)
    whole = events(stream([DENIED_EMAIL], "Hello there"))
    head, rest = sse(*[d for _, d in whole[:4]]), sse(*[d for _, d in whole[4:]])
    from bastion.proxy.toolcalls import stream_callback

    callback = stream_callback(rewriter)
    assert events(b"".join(callback(head))) == whole[:4]  # role and text: sent at once
    assert callback(rest[:-20]) == []  # the call's fragments: held
    assert b"send_email" in b"".join(callback(rest[-20:]) + callback(b""))


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_block_mode_ends_the_stream_with_an_openai_error(tmp_path: Path, size: int | None) -> None:
    out = events(run(Rewriter(judge(tmp_path), block=True), stream([ALLOWED_WEATHER, DENIED_EMAIL], "Hi"), size))
    *passed, (_, error) = out
    assert all("tool_calls" not in c["delta"] for _, d in passed for c in d["choices"])
    assert accumulate(passed)[0]["content"] == "Hi"
    assert error["error"]["code"] == "policy_denied" and error["error"]["type"] == "permission_denied"
    assert "send_email" in error["error"]["message"]


def test_choices_are_decided_each_on_their_own(tmp_path: Path) -> None:
    first, second = call_chunks([DENIED_EMAIL], choice=0), call_chunks([ALLOWED_WEATHER], choice=1)
    interleaved = [c for pair in zip(first, second, strict=True) for c in pair]
    upstream = sse(*interleaved, chunk({}, "tool_calls", 0), chunk({}, "tool_calls", 1), "[DONE]")
    denied, allowed = accumulate(events(run(Rewriter(judge(tmp_path), block=False), upstream, 7)))
    assert denied["tool_calls"] == [] and denied["finish_reason"] == "stop" and "send_email" in denied["content"]
    assert [c["name"] for c in allowed["tool_calls"]] == ["get_weather"] and allowed["finish_reason"] == "tool_calls"


def test_legacy_function_call(tmp_path: Path) -> None:
    pieces = thirds(json.dumps(DENIED_DELETE[1]))
    upstream = sse(
        chunk({"role": "assistant", "content": None, "function_call": {"name": "delete_user", "arguments": ""}}),
        *[chunk({"function_call": {"arguments": p}}) for p in pieces],
        chunk({}, "function_call"),
        "[DONE]",
    )
    found = events(run(Rewriter(judge(tmp_path), block=False), upstream, 1))
    assert not any("function_call" in c["delta"] for _, d in found if isinstance(d, dict) for c in d["choices"])
    (message,) = accumulate(found)
    assert "delete_user" in message["content"] and message["finish_reason"] == "stop"
    body = completion([])
    body["choices"][0]["message"]["function_call"] = {"name": "delete_user", "arguments": "{}"}
    body["choices"][0]["finish_reason"] = "function_call"
    govern(body, judge(tmp_path))
    assert "function_call" not in body["choices"][0]["message"] and body["choices"][0]["finish_reason"] == "stop"


def test_fragments_after_a_decision_cannot_change_the_call(tmp_path: Path) -> None:
    late = chunk({"tool_calls": [{"index": 0, "function": {"arguments": ', "extra": 1'}}]})
    upstream = stream([ALLOWED_WEATHER]).replace(b"data: [DONE]\n\n", sse(late) + b"data: [DONE]\n\n")
    (message,) = accumulate(events(run(Rewriter(judge(tmp_path), block=False), upstream, None)))
    assert message["tool_calls"][0]["arguments"] == json.dumps(ALLOWED_WEATHER[1])


def test_a_stream_cut_short_is_still_decided(tmp_path: Path) -> None:
    upstream = sse(chunk({"role": "assistant", "content": None}), *call_chunks([DENIED_EMAIL]))
    (message,) = accumulate(events(run(Rewriter(judge(tmp_path), block=False), upstream, 7)))
    assert message["tool_calls"] == [] and "send_email" in message["content"]


def test_custom_tool_input_is_decided_as_the_input_argument(tmp_path: Path) -> None:
    custom = {"id": "call_c", "type": "custom", "custom": {"name": "delete_user", "input": "everyone"}}
    body = completion([])
    body["choices"][0]["message"]["tool_calls"] = [custom]
    (verdict,) = govern(body, judge(tmp_path))
    assert verdict.request.args == {"input": "everyone"} and verdict.decision.rule == "never-delete"
    start = {"index": 0, "id": "call_c", "type": "custom", "custom": {"name": "delete_user", "input": "every"}}
    upstream = sse(
        chunk({"role": "assistant", "tool_calls": [start]}),
        chunk({"tool_calls": [{"index": 0, "custom": {"input": "one"}}]}),
        chunk({}, "tool_calls"),
    )
    recorded: list[Any] = []
    (message,) = accumulate(events(run(Rewriter(judge(tmp_path, recorded), block=False), upstream, 1)))
    assert recorded[0].request.args == {"input": "everyone"} and message["tool_calls"] == []


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_comments_between_events_neither_cut_a_call_short_nor_get_lost(tmp_path: Path, size: int | None) -> None:
    upstream = stream([ALLOWED_WEATHER, DENIED_EMAIL])
    with_comments = upstream.replace(b"\n\n", b"\n\n: keep-alive\n\n")
    out = run(Rewriter(judge(tmp_path), block=False), with_comments, size)
    assert out.count(b": keep-alive") == upstream.count(b"\n\n")
    assert events(out) == events(run(Rewriter(judge(tmp_path), block=False), upstream, None))
