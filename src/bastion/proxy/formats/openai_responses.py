"""OpenAI Responses API (``POST .../responses``).

Tool calls: ``function_call`` (and ``custom_tool_call``) output items.

A blocked call's item is replaced, at the same output index, by an assistant ``message`` item
whose text is the explanation, so every other item keeps its index. Streamed, a call item's
events are held from ``response.output_item.added`` to ``response.output_item.done``, then sent
unchanged or replaced by the message item's events, with ``sequence_number`` renumbered after.
The ``response`` that lifecycle events carry (``response.completed`` ...) gets the same
replacement. A custom tool's free-form input is decided as the argument ``input``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from bastion import semconv
from bastion.proxy import provenance
from bastion.proxy.formats.base import GUIDANCE_PREFIX, ApiFormat, Channels, data_event, ends_with
from bastion.proxy.formats.openai_chat import error_body, first_user_message
from bastion.proxy.toolcalls import (
    Json,
    Judge,
    ToolCall,
    ToolList,
    Verdict,
    blocked_code,
    blocked_message,
    event_json,
    sse_event,
)

ARGUMENT_DELTAS = {
    "response.function_call_arguments.delta": "arguments",
    "response.custom_tool_call_input.delta": "input",
}


def _tool_name(tool: Any) -> str | None:
    if isinstance(tool, dict) and tool.get("type") in ("function", "custom") and isinstance(tool.get("name"), str):
        return str(tool["name"])
    return None


TOOL_LISTS = (ToolList("tools", _tool_name, "tool_choice", _tool_name, ("tool_choice", "parallel_tool_calls")),)


def _call(item: Any) -> ToolCall | None:
    if not isinstance(item, dict) or item.get("type") not in ("function_call", "custom_tool_call"):
        return None
    if item["type"] == "function_call":
        arguments = item.get("arguments")
    else:
        arguments = {"input": item["input"]} if isinstance(item.get("input"), str) else None
    return ToolCall(str(item.get("call_id") or item.get("id") or ""), str(item.get("name") or ""), arguments)


def _text_part(text: str) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def replacement(item: Json, verdict: Verdict) -> Json:
    """The message item that takes a blocked call's place (the same id however often it is built)."""
    return {
        "type": "message",
        "id": f"msg_bastion_{item.get('id') or verdict.call.id}",
        "status": "completed",
        "role": "assistant",
        "content": [_text_part(verdict.explanation)],
    }


def govern_output(output: list[Any], judge: Judge) -> list[Verdict]:
    verdicts = []
    for position, item in enumerate(output):
        call = _call(item)
        if call is None:
            continue
        verdict = judge(call)
        verdicts.append(verdict)
        if not verdict.allowed:
            output[position] = replacement(item, verdict)
    return verdicts


def govern(body: Json, judge: Judge) -> list[Verdict]:
    output = body.get("output")
    return govern_output(output, judge) if isinstance(output, list) else []


@dataclass
class _Item:
    added: Json
    done: Json | None = None
    streamed: list[str] = field(default_factory=list)

    def final(self) -> Json:
        if self.done is not None:
            return self.done
        key = "arguments" if self.added.get("type") == "function_call" else "input"
        return {**self.added, key: "".join(self.streamed)}


class Rewriter:
    def __init__(self, judge: Judge, block: bool) -> None:
        self.judge, self.block = judge, block
        self.closed = False
        self._held: list[tuple[str, bytes, Json]] = []
        self._items: dict[int, _Item] = {}  # output index -> call item held
        self._open: set[int] = set()
        self._replaced: set[int] = set()
        self._next_seq: int | None = None

    def error(self, message: str, code: str) -> bytes:
        detail = error_body(403, message, code)["error"]
        return self._generated("error", {"code": code, "message": message, "param": None, "error": detail})

    def event(self, raw: bytes) -> list[bytes]:
        name, data = event_json(raw)
        if data is None:  # a comment or keep-alive: held in turn when something is
            if self._open:
                self._held.append((name, raw, {}))
                return []
            return [raw]
        kind, index = data.get("type"), data.get("output_index")
        if kind == "response.output_item.added" and _call(data.get("item")) is not None and isinstance(index, int):
            self._items[index] = _Item(data["item"])
            self._open.add(index)
        if self._open:
            self._held.append((name, raw, data))
            item = self._items.get(index) if isinstance(index, int) else None
            if item is not None and kind in ARGUMENT_DELTAS and isinstance(data.get("delta"), str):
                item.streamed.append(data["delta"])
            elif item is not None and kind == "response.output_item.done" and isinstance(data.get("item"), dict):
                item.done = data["item"]
                self._open.discard(index)
            if self._open and not isinstance(data.get("response"), dict):
                return []
            return self._resolve()
        if index in self._replaced:
            return []  # a late event of a blocked call
        return self._pass(name, raw, data)

    def end(self) -> list[bytes]:
        return self._resolve()

    def _pass(self, name: str, raw: bytes, data: Json) -> list[bytes]:
        """An event not held: a call it carries (in a response's output, or a stray item) is decided too."""
        blocked: list[Verdict] = []
        item = data.get("item")
        call = _call(item)
        if call is not None and isinstance(item, dict):
            verdict = self.judge(call)
            if not verdict.allowed:
                blocked.append(verdict)
                data = {**data, "item": replacement(item, verdict)}
                if isinstance(data.get("output_index"), int):
                    self._replaced.add(data["output_index"])
        response = data.get("response")
        output = response.get("output") if isinstance(response, dict) else None
        if isinstance(output, list) and any(_call(i) for i in output):
            output = list(output)
            data = {**data, "response": {**response, "output": output}}  # type: ignore[dict-item]
            blocked += [v for v in govern_output(output, self.judge) if not v.allowed]
        if blocked and self.block:
            return self._block(blocked)
        return [self._emit(name, raw, data, bool(blocked))]

    def _resolve(self) -> list[bytes]:
        if not self._held:
            return []
        held, items = self._held, self._items
        self._held, self._items, self._open = [], {}, set()
        verdicts = {}
        for index, item in items.items():
            final = item.final()
            call = _call(final)
            if call is not None:
                verdicts[index] = (final, self.judge(call))
        blocked = {index: fv for index, fv in verdicts.items() if not fv[1].allowed}
        if blocked and self.block:
            return self._block([v for _, v in blocked.values()])
        self._replaced.update(blocked)
        out: list[bytes] = []
        for name, raw, data in held:
            at = data.get("output_index")
            if at in blocked:
                if data.get("type") == "response.output_item.added":
                    out += self._replacement_events(at, *blocked[at])
            elif at in self._replaced:
                continue  # a late event of a call blocked before
            elif at in items:
                out.append(self._emit(name, raw, data))  # an allowed call's own event
            else:
                out += self._pass(name, raw, data)
            if self.closed:
                break
        return out

    def _block(self, blocked: list[Verdict]) -> list[bytes]:
        self.closed = True
        return [self.error(blocked_message(blocked), blocked_code(blocked))]

    def _replacement_events(self, index: int, item: Json, verdict: Verdict) -> list[bytes]:
        message = replacement(item, verdict)
        text = verdict.explanation
        opened = {**message, "status": "in_progress", "content": []}
        at = {"item_id": message["id"], "output_index": index, "content_index": 0}
        events: list[tuple[str, Json]] = [
            ("response.output_item.added", {"output_index": index, "item": opened}),
            ("response.content_part.added", {**at, "part": _text_part("")}),
            ("response.output_text.delta", {**at, "delta": text, "logprobs": []}),
            ("response.output_text.done", {**at, "text": text, "logprobs": []}),
            ("response.content_part.done", {**at, "part": _text_part(text)}),
            ("response.output_item.done", {"output_index": index, "item": message}),
        ]
        return [self._generated(kind, fields) for kind, fields in events]

    def _sequence(self, original: int | None = None) -> int:
        if self._next_seq is None:
            self._next_seq = original or 0
        number = self._next_seq
        self._next_seq += 1
        return number

    def _generated(self, kind: str, fields: Json) -> bytes:
        return sse_event({"type": kind, **fields, "sequence_number": self._sequence()}, kind)

    def _emit(self, name: str, raw: bytes, data: Json, changed: bool = False) -> bytes:
        """An upstream event, renumbered to follow what was sent before it."""
        original = data.get("sequence_number")
        if isinstance(original, int) and not isinstance(original, bool):
            number = self._sequence(original)
            if number != original:
                data, changed = {**data, "sequence_number": number}, True
        if not changed:
            return raw
        return sse_event(data, name if name != "message" else None)


def error_event(message: str, code: str) -> bytes:
    """The openai SDK raises on an ``error`` event only when its data carries ``error``."""
    data = {
        "type": "error",
        "code": code,
        "message": message,
        "param": None,
        "error": error_body(403, message, code)["error"],
    }
    return f"event: error\ndata: {json.dumps(data)}\n\n".encode()


# Personal data in streams: text and argument deltas by output item and content part.

_DELTAS = ("response.output_text.delta", "response.function_call_arguments.delta")
_DONES = ("response.output_text.done", "response.function_call_arguments.done")


def redact_event(channels: Channels, data: Json, name: str) -> list[bytes]:
    kind = str(data.get("type") or "")
    if kind in _DELTAS:
        json_string = kind.startswith("response.function_call")
        key = (data.get("output_index"), data.get("content_index"), json_string)
        if isinstance(data.get("delta"), str):
            data["delta"] = channels.feed(key, data["delta"], json_string)
        return [data_event(data, name)]
    out = []
    if kind in _DONES:
        json_string = kind.startswith("response.function_call")
        key = (data.get("output_index"), data.get("content_index"), json_string)
        if rest := channels.flush(key):
            delta_kind = kind.removesuffix(".done") + ".delta"
            tail = {k: v for k, v in data.items() if k not in ("text", "arguments", "type")}
            out.append(data_event({"type": delta_kind, **tail, "delta": rest}, delta_kind))
    fields = {k: v for k, v in data.items() if k not in ("type", "delta")}
    rewritten = channels.whole(fields)
    if isinstance(data.get("arguments"), str):
        rewritten["arguments"] = channels.text(data["arguments"], True)
    return [*out, data_event({"type": kind, **rewritten}, name)]


# The conversation: instructions and input items; a turn may continue an earlier response.


def messages(body: Json) -> list[Json]:
    found: list[Json] = []
    if body.get("instructions"):
        found.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    if isinstance(items, str):
        found.append({"role": "user", "content": items})
    elif isinstance(items, list):
        found += [i for i in items if isinstance(i, dict)]
    return found


def with_guidance(body: Json, text: str) -> Json | None:
    new = copy.deepcopy(body)
    guidance = GUIDANCE_PREFIX + text
    before = new.get("instructions")
    new["instructions"] = f"{before}\n\n{guidance}" if isinstance(before, str) and before else guidance
    return new


def first_user_text(body: Json) -> str:
    items = body.get("input")
    return items if isinstance(items, str) else first_user_message(items)


def continues(body: Json) -> str | None:
    previous = body.get("previous_response_id")
    return previous if isinstance(previous, str) else None


FORMAT = ApiFormat(
    name="responses",
    provider="openai",
    provider_name=semconv.PROVIDER_OPENAI,
    operation=semconv.OPERATION_CHAT,
    recognises=ends_with("responses"),
    error_body=error_body,
    error_event=error_event,
    tool_lists=TOOL_LISTS,
    govern=govern,
    rewriter=Rewriter,
    redact_event=redact_event,
    messages=messages,
    with_guidance=with_guidance,
    first_user_text=first_user_text,
    conversation=provenance.read_responses,
    continues=continues,
)
