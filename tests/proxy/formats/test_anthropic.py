"""Anthropic Messages: tool_use blocks decided in JSON responses and in streamed events."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bastion.proxy.formats.anthropic import Rewriter, govern
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

Call = tuple[str, Any]


def arguments_text(args: Any) -> str:
    return args if isinstance(args, str) else json.dumps(args)


def thirds(text: str) -> list[str]:
    n = len(text)
    return [p for p in (text[: n // 3], text[n // 3 : 2 * n // 3], text[2 * n // 3 :]) if p]


def message(stop: str | None, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }


def tool_block(i: int, name: str, args: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": args}


def blocks(calls: list[Call], text: str | None) -> list[dict[str, Any]]:
    first = [{"type": "text", "text": text}] if text else []
    return first + [tool_block(len(first) + i, n, a) for i, (n, a) in enumerate(calls)]


def stream(calls: list[Call], text: str | None = None) -> bytes:
    def ev(kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, **fields}

    found = [ev("message_start", message=message(None, [])), ev("ping")]
    if text:
        found += [
            ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
            *[ev("content_block_delta", index=0, delta={"type": "text_delta", "text": p}) for p in thirds(text)],
            ev("content_block_stop", index=0),
        ]
    for i, (name, args) in enumerate(calls, start=1 if text else 0):
        found += [
            ev("content_block_start", index=i, content_block=tool_block(i, name, {})),
            ev("ping"),
            *[
                ev("content_block_delta", index=i, delta={"type": "input_json_delta", "partial_json": p})
                for p in thirds(arguments_text(args))
            ],
            ev("content_block_stop", index=i),
        ]
    stop = "tool_use" if calls else "end_turn"
    found += [ev("message_delta", delta={"stop_reason": stop, "stop_sequence": None}, usage={"output_tokens": 4})]
    found.append(ev("message_stop"))
    return sse(*found, named=True)


def accumulate(found: list[Event]) -> dict[str, Any]:
    """The message as the anthropic SDK's stream accumulator builds it."""
    msg: dict[str, Any] = {}
    json_bufs: dict[int, str] = {}
    for name, data in found:
        assert name == data["type"] and name != "error"
        if name == "message_start":
            msg = copy.deepcopy(data["message"])
        elif name == "content_block_start":
            assert data["index"] == len(msg["content"])  # blocks are appended: indexes must follow
            msg["content"].append(copy.deepcopy(data["content_block"]))
        elif name == "content_block_delta":
            block, delta = msg["content"][data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                assert block["type"] == "text"
                block["text"] += delta["text"]
            else:
                assert block["type"] == "tool_use"
                json_bufs[data["index"]] = json_bufs.get(data["index"], "") + delta["partial_json"]
        elif name == "content_block_stop" and data["index"] in json_bufs:
            msg["content"][data["index"]]["input"] = json_bufs[data["index"]]
        elif name == "message_delta":
            msg["stop_reason"] = data["delta"]["stop_reason"]
    return msg


CASES = [
    ("allowed", [ALLOWED_WEATHER], None, ["get_weather"], "tool_use", []),
    ("denied", [DENIED_EMAIL], None, [], "end_turn", ["send_email"]),
    ("denied after text", [DENIED_DELETE], "Deleting now.", [], "end_turn", ["delete_user"]),
    ("review", [REVIEW_MONEY], None, [], "end_turn", ["send_money"]),
    ("denied first of two", [DENIED_EMAIL, ALLOWED_WEATHER], "Sure.", ["get_weather"], "tool_use", ["send_email"]),
    (
        "denied between",
        [ALLOWED_WEATHER, DENIED_DELETE, ALLOWED_EMAIL],
        None,
        ["get_weather", "send_email"],
        "tool_use",
        ["delete_user"],
    ),
    ("unparsable", [("get_weather", '{"city": "Par')], None, [], "end_turn", ["get_weather"]),
]
IDS = [c[0] for c in CASES]


def check(
    body: dict[str, Any], calls: list[Call], text: str | None, kept: list[str], stop: str, explained: list[str]
) -> None:
    content = body["content"]
    assert len(content) == len(calls) + (1 if text else 0)  # every block keeps its index
    assert [b["name"] for b in content if b["type"] == "tool_use"] == kept
    for block in content:
        if block["type"] == "tool_use":
            expected = dict(calls)[block["name"]]
            assert block["input"] in (expected, arguments_text(expected))
    texts = [b["text"] for b in content if b["type"] == "text"]
    assert texts[: 1 if text else 0] == ([text] if text else [])
    blocked = texts[1 if text else 0 :]
    assert len(blocked) == len(explained)
    for name, found in zip(explained, blocked, strict=True):
        assert found.startswith(f"Bastion blocked the model's call of tool '{name}'")
    assert body["stop_reason"] == stop


@pytest.mark.parametrize(("case", "calls", "text", "kept", "stop", "explained"), CASES, ids=IDS)
def test_json_response(
    tmp_path: Path, case: str, calls: list[Call], text: str | None, kept: list[str], stop: str, explained: list[str]
) -> None:
    body = message("tool_use", blocks(calls, text))
    original = copy.deepcopy(body)
    verdicts = govern(body, judge(tmp_path))
    assert [v.call.name for v in verdicts] == [n for n, _ in calls]
    check(body, calls, text, kept, stop, explained)
    if not explained:
        assert body == original


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize(("case", "calls", "text", "kept", "stop", "explained"), CASES, ids=IDS)
def test_stream(
    tmp_path: Path,
    size: int | None,
    case: str,
    calls: list[Call],
    text: str | None,
    kept: list[str],
    stop: str,
    explained: list[str],
) -> None:
    upstream = stream(calls, text)
    out = run(Rewriter(judge(tmp_path), block=False), upstream, size)
    if not explained:
        assert out == upstream
    check(accumulate(events(out)), calls, text, kept, stop, explained)
    assert out == run(Rewriter(judge(tmp_path), block=False), upstream, None)


def test_a_tool_use_without_streamed_input_is_decided_on_its_start(tmp_path: Path) -> None:
    upstream = sse(
        {"type": "message_start", "message": message(None, [])},
        {"type": "content_block_start", "index": 0, "content_block": tool_block(0, "delete_user", {})},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 1}},
        {"type": "message_stop"},
        named=True,
    )
    recorded: list[Any] = []
    body = accumulate(events(run(Rewriter(judge(tmp_path, recorded), block=False), upstream, 7)))
    assert recorded[0].request.args == {} and body["stop_reason"] == "end_turn"
    assert body["content"][0]["type"] == "text"


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_block_mode_ends_the_stream_with_an_error_event(tmp_path: Path, size: int | None) -> None:
    found = events(run(Rewriter(judge(tmp_path), block=True), stream([DENIED_EMAIL], "Hi"), size))
    *passed, (name, error) = found
    assert passed[-1][1] == {"type": "content_block_stop", "index": 0}  # the text block went through
    assert name == "error" and error["type"] == "error"
    assert error["error"]["type"] == "permission_error" and error["error"]["code"] == "policy_denied"
    assert "send_email" in error["error"]["message"]


def test_a_message_start_that_carries_tool_use_is_decided_too(tmp_path: Path) -> None:
    start = message(None, [tool_block(0, *DENIED_DELETE), tool_block(1, *ALLOWED_WEATHER)])
    upstream = sse(
        {"type": "message_start", "message": start},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 1}},
        named=True,
    )
    body = accumulate(events(run(Rewriter(judge(tmp_path), block=False), upstream, 7)))
    assert [b["type"] for b in body["content"]] == ["text", "tool_use"] and body["stop_reason"] == "tool_use"


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_comments_between_events_neither_cut_a_call_short_nor_get_lost(tmp_path: Path, size: int | None) -> None:
    upstream = stream([ALLOWED_WEATHER, DENIED_EMAIL])
    with_comments = upstream.replace(b"\n\n", b"\n\n: keep-alive\n\n")
    out = run(Rewriter(judge(tmp_path), block=False), with_comments, size)
    assert out.count(b": keep-alive") == upstream.count(b"\n\n")
    assert events(out) == events(run(Rewriter(judge(tmp_path), block=False), upstream, None))
