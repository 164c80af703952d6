"""OpenAI Responses API: function_call items decided in JSON responses and in streamed events."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from bastion.proxy.formats.openai_responses import Rewriter, govern
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


def response(status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "created_at": 1, "status": status, "model": "m", "output": output}


def call_item(i: int, name: str, args: Any, done: bool = True) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{i}",
        "call_id": f"call_{i}",
        "name": name,
        "arguments": arguments_text(args) if done else "",
        "status": "completed" if done else "in_progress",
    }


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(text: str, done: bool = True) -> dict[str, Any]:
    content = [text_part(text)] if done else []
    status = "completed" if done else "in_progress"
    return {"type": "message", "id": "msg_1", "status": status, "role": "assistant", "content": content}


def output_items(calls: list[Call], text: str | None) -> list[dict[str, Any]]:
    first = [message_item(text)] if text else []
    return first + [call_item(len(first) + i, n, a) for i, (n, a) in enumerate(calls)]


def stream(calls: list[Call], text: str | None = None) -> bytes:
    numbers = itertools.count()

    def ev(kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "sequence_number": next(numbers), **fields}

    found = [
        ev("response.created", response=response("in_progress", [])),
        ev("response.in_progress", response=response("in_progress", [])),
    ]
    if text:
        at = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
        found += [
            ev("response.output_item.added", output_index=0, item=message_item(text, done=False)),
            ev("response.content_part.added", **at, part=text_part("")),
            *[ev("response.output_text.delta", **at, delta=p, logprobs=[]) for p in thirds(text)],
            ev("response.output_text.done", **at, text=text, logprobs=[]),
            ev("response.content_part.done", **at, part=text_part(text)),
            ev("response.output_item.done", output_index=0, item=message_item(text)),
        ]
    offset = 1 if text else 0
    for i, (name, args) in enumerate(calls, start=offset):
        at = {"item_id": f"fc_{i}", "output_index": i}
        found += [
            ev("response.output_item.added", output_index=i, item=call_item(i, name, args, done=False)),
            *[ev("response.function_call_arguments.delta", **at, delta=p) for p in thirds(arguments_text(args))],
            ev("response.function_call_arguments.done", **at, name=name, arguments=arguments_text(args)),
            ev("response.output_item.done", output_index=i, item=call_item(i, name, args)),
        ]
    found.append(ev("response.completed", response=response("completed", output_items(calls, text))))
    return sse(*found, named=True)


def accumulate(found: list[Event]) -> dict[str, Any]:
    """The final response, after checking the events build it as the openai SDK's stream state does."""
    items: dict[int, dict[str, Any]] = {}
    completed = None
    for number, (name, data) in enumerate(found):
        assert name == data["type"] and data["sequence_number"] == number
        kind, index = data["type"], data.get("output_index")
        if kind == "response.output_item.added":
            assert index not in items
            items[index] = copy.deepcopy(data["item"])
        elif kind == "response.content_part.added":
            items[index]["content"].append(data["part"])
        elif kind == "response.output_text.delta":
            assert items[index]["type"] == "message"
            items[index]["content"][data["content_index"]]["text"] += data["delta"]
        elif kind == "response.function_call_arguments.delta":
            assert items[index]["type"] == "function_call"
            items[index]["arguments"] += data["delta"]
        elif kind == "response.output_item.done":
            assert (items[index]["type"], items[index]["id"]) == (data["item"]["type"], data["item"]["id"])
            assert items[index].get("content", items[index].get("arguments")) == data["item"].get(
                "content", data["item"].get("arguments")
            )
            items[index] = data["item"]
        elif kind == "response.completed":
            completed = data["response"]
    assert completed is not None
    assert completed["output"] == [items[i] for i in sorted(items)]
    assert sorted(items) == list(range(len(items)))
    return completed


CASES = [
    ("allowed", [ALLOWED_WEATHER], None, ["get_weather"], []),
    ("denied", [DENIED_EMAIL], None, [], ["send_email"]),
    ("denied after text", [DENIED_DELETE], "Deleting now.", [], ["delete_user"]),
    ("review", [REVIEW_MONEY], None, [], ["send_money"]),
    ("denied first of two", [DENIED_EMAIL, ALLOWED_WEATHER], "Sure.", ["get_weather"], ["send_email"]),
    (
        "denied between",
        [ALLOWED_WEATHER, DENIED_DELETE, ALLOWED_EMAIL],
        None,
        ["get_weather", "send_email"],
        ["delete_user"],
    ),
    ("unparsable", [("get_weather", '{"city": "Par')], None, [], ["get_weather"]),
]
IDS = [c[0] for c in CASES]


def check(
    output: list[dict[str, Any]], calls: list[Call], text: str | None, kept: list[str], explained: list[str]
) -> None:
    assert len(output) == len(calls) + (1 if text else 0)  # every item keeps its index
    assert [i["name"] for i in output if i["type"] == "function_call"] == kept
    for item in output:
        if item["type"] == "function_call":
            assert item["arguments"] == arguments_text(dict(calls)[item["name"]])
    texts = [i["content"][0]["text"] for i in output if i["type"] == "message"]
    assert texts[: 1 if text else 0] == ([text] if text else [])
    blocked = texts[1 if text else 0 :]
    assert len(blocked) == len(explained)
    for name, found in zip(explained, blocked, strict=True):
        assert found.startswith(f"Bastion blocked the model's call of tool '{name}'")


@pytest.mark.parametrize(("case", "calls", "text", "kept", "explained"), CASES, ids=IDS)
def test_json_response(
    tmp_path: Path, case: str, calls: list[Call], text: str | None, kept: list[str], explained: list[str]
) -> None:
    body = response("completed", output_items(calls, text))
    original = copy.deepcopy(body)
    verdicts = govern(body, judge(tmp_path))
    assert [v.call.name for v in verdicts] == [n for n, _ in calls]
    check(body["output"], calls, text, kept, explained)
    if not explained:
        assert body == original


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize(("case", "calls", "text", "kept", "explained"), CASES, ids=IDS)
def test_stream(
    tmp_path: Path,
    size: int | None,
    case: str,
    calls: list[Call],
    text: str | None,
    kept: list[str],
    explained: list[str],
) -> None:
    upstream = stream(calls, text)
    out = run(Rewriter(judge(tmp_path), block=False), upstream, size)
    if not explained:
        assert out == upstream
    check(accumulate(events(out))["output"], calls, text, kept, explained)
    assert out == run(Rewriter(judge(tmp_path), block=False), upstream, None)


def test_each_call_is_decided_once_though_the_response_repeats_it(tmp_path: Path) -> None:
    recorded: list[Any] = []
    run(Rewriter(judge(tmp_path, recorded), block=False), stream([DENIED_EMAIL, ALLOWED_WEATHER]), 7)
    assert [v.call.name for v in recorded] == ["send_email", "get_weather"]


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_block_mode_ends_the_stream_with_an_error_event(tmp_path: Path, size: int | None) -> None:
    found = events(run(Rewriter(judge(tmp_path), block=True), stream([DENIED_DELETE], "Hi"), size))
    *passed, (name, error) = found
    assert [d["sequence_number"] for _, d in found] == list(range(len(found)))
    assert passed[-1][1]["type"] == "response.output_item.done"  # the text message, nothing of the call
    assert name == "error" and error["type"] == "error" and error["code"] == "policy_denied"
    assert "delete_user" in error["message"] and error["error"]["code"] == "policy_denied"


def test_a_call_only_in_the_final_response_is_replaced_there(tmp_path: Path) -> None:
    final = response("completed", [call_item(0, *DENIED_EMAIL)])
    upstream = sse({"type": "response.completed", "sequence_number": 0, "response": final}, named=True)
    ((_, data),) = events(run(Rewriter(judge(tmp_path), block=False), upstream, 1))
    (item,) = data["response"]["output"]
    assert item["type"] == "message" and "send_email" in item["content"][0]["text"]


def test_custom_tool_input_is_decided_as_the_input_argument(tmp_path: Path) -> None:
    item = {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_1", "name": "delete_user", "input": "all"}
    body = response("completed", [item])
    (verdict,) = govern(body, judge(tmp_path))
    assert verdict.request.args == {"input": "all"} and body["output"][0]["type"] == "message"


def test_a_stray_call_item_is_decided_where_it_appears(tmp_path: Path) -> None:
    done = {"type": "response.output_item.done", "sequence_number": 0, "output_index": 0}
    upstream = sse({**done, "item": call_item(0, *DENIED_DELETE)}, named=True)
    ((_, data),) = events(run(Rewriter(judge(tmp_path), block=False), upstream, 7))
    assert data["item"]["type"] == "message" and "delete_user" in data["item"]["content"][0]["text"]


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_comments_between_events_neither_cut_a_call_short_nor_get_lost(tmp_path: Path, size: int | None) -> None:
    upstream = stream([ALLOWED_WEATHER, DENIED_EMAIL])
    with_comments = upstream.replace(b"\n\n", b"\n\n: keep-alive\n\n")
    out = run(Rewriter(judge(tmp_path), block=False), with_comments, size)
    assert out.count(b": keep-alive") == upstream.count(b"\n\n")
    assert events(out) == events(run(Rewriter(judge(tmp_path), block=False), upstream, None))
