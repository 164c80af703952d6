"""Anthropic Messages (``POST .../messages``).

Tool calls: ``tool_use`` content blocks, in responses and in streamed events.

A blocked call's block is replaced, at the same index, by a text block with the explanation, so
every other block keeps its index; when no ``tool_use`` block is left, ``stop_reason`` becomes
``end_turn``. Streamed, a tool_use block's events are held from ``content_block_start`` to its
``content_block_stop``, then sent unchanged or replaced by a text block's three events.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from bastion import semconv
from bastion.proxy import provenance
from bastion.proxy.formats.base import GUIDANCE_PREFIX, ApiFormat, Channels, data_event, ends_with, json_event
from bastion.proxy.formats.openai_chat import first_user_message
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


def _tool_name(tool: Any) -> str | None:
    return str(tool["name"]) if isinstance(tool, dict) and isinstance(tool.get("name"), str) else None


def _forced(choice: Any) -> str | None:
    return _tool_name(choice) if isinstance(choice, dict) and choice.get("type") == "tool" else None


TOOL_LISTS = (ToolList("tools", _tool_name, "tool_choice", _forced, ("tool_choice",)),)


def _call(block: Json, arguments: Any) -> ToolCall:
    return ToolCall(str(block.get("id") or ""), str(block.get("name") or ""), arguments)


def _is_tool_use(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "tool_use"


def govern(body: Json, judge: Judge) -> list[Verdict]:
    content = body.get("content")
    if not isinstance(content, list):
        return []
    verdicts = []
    for position, block in enumerate(content):
        if not _is_tool_use(block):
            continue
        verdict = judge(_call(block, block.get("input")))
        verdicts.append(verdict)
        if not verdict.allowed:
            content[position] = {"type": "text", "text": verdict.explanation}
    if body.get("stop_reason") == "tool_use" and not any(_is_tool_use(b) for b in content):
        body["stop_reason"] = "end_turn"
    return verdicts


@dataclass
class _Block:
    index: Any
    start: Json
    partial_json: list[str] = field(default_factory=list)

    def arguments(self) -> Any:
        """As the anthropic SDK assembles them: the streamed JSON when there is any, else the start's."""
        return "".join(self.partial_json) if self.partial_json else self.start.get("input")


class Rewriter:
    def __init__(self, judge: Judge, block: bool) -> None:
        self.judge, self.block = judge, block
        self.closed = False
        self._held: list[tuple[bytes, Json]] = []
        self._open: _Block | None = None
        self._kept = self._removed = False  # in the current message

    def error(self, message: str, code: str) -> bytes:
        return sse_event(error_body(403, message, code), "error")

    def event(self, raw: bytes) -> list[bytes]:
        _, data = event_json(raw)
        kind = data.get("type") if data is not None else None
        out: list[bytes] = []
        if self._open is not None:
            block = self._open
            if kind == "content_block_delta" and data and data.get("index") == block.index:
                delta = data.get("delta")
                if isinstance(delta, dict) and isinstance(delta.get("partial_json"), str):
                    block.partial_json.append(delta["partial_json"])
            if kind not in ("content_block_start", "message_delta", "message_stop", "error"):
                self._held.append((raw, data or {}))
                if kind == "content_block_stop" and data and data.get("index") == block.index:
                    return self._resolve()
                return []
            out = self._resolve()  # the block never stopped: decide what arrived
            if self.closed:
                return out
        if kind == "message_start" and data is not None:
            self._kept = self._removed = False
            message = data.get("message")
            if isinstance(message, dict) and any(_is_tool_use(b) for b in message.get("content") or []):
                return [*out, *self._started_with_calls(data, message)]
        elif kind == "content_block_start" and data and _is_tool_use(data.get("content_block")):
            self._open = _Block(data.get("index"), data["content_block"])
            self._held = [(raw, data)]
            return out
        elif kind == "message_delta" and data and self._removed and not self._kept:
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason") == "tool_use":
                return [*out, sse_event({**data, "delta": {**delta, "stop_reason": "end_turn"}}, kind)]
        return [*out, raw]

    def end(self) -> list[bytes]:
        return self._resolve()

    def _started_with_calls(self, data: Json, message: Json) -> list[bytes]:
        """A message_start that already carries tool_use blocks (providers send none): decided whole."""
        message = copy.deepcopy(message)
        verdicts = govern(message, self.judge)
        blocked = [v for v in verdicts if not v.allowed]
        if blocked and self.block:
            self.closed = True
            return [self.error(blocked_message(blocked), blocked_code(blocked))]
        self._kept = len(blocked) < len(verdicts)
        self._removed = bool(blocked)
        return [sse_event({**data, "message": message}, "message_start")]

    def _resolve(self) -> list[bytes]:
        block, held = self._open, self._held
        self._open, self._held = None, []
        if block is None:
            return []
        verdict = self.judge(_call(block.start, block.arguments()))
        if verdict.allowed:
            self._kept = True
            return [raw for raw, _ in held]
        if self.block:
            self.closed = True
            return [self.error(blocked_message([verdict]), blocked_code([verdict]))]
        self._removed = True
        index = block.index
        # Events held that are not the block's own (a ping) still pass.
        others = [raw for raw, data in held if data.get("index") != index and data.get("type") != "content_block_start"]
        text = {"type": "text_delta", "text": verdict.explanation}
        return [
            _event("content_block_start", index=index, content_block={"type": "text", "text": ""}),
            _event("content_block_delta", index=index, delta=text),
            *others,
            _event("content_block_stop", index=index),
        ]


def _event(kind: str, **fields: Any) -> bytes:
    return sse_event({"type": kind, **fields}, kind)


# Errors

# HTTP status -> Anthropic's error type
_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    # Anthropic's own rate-limit type, so the SDK's backoff retries after Retry-After.
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
}


def error_body(status: int, message: str, code: str) -> Json:
    kind = _ERROR_TYPES.get(status, "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message, "code": code}}


def error_event(message: str, code: str) -> bytes:
    return json_event(error_body(403, message, code), "error")


# Personal data in streams: each content block's text and partial JSON.


def redact_event(channels: Channels, data: Json, name: str) -> list[bytes]:
    kind, index = data.get("type"), data.get("index")
    delta = data.get("delta")
    if kind == "content_block_delta" and isinstance(delta, dict):
        for field_name, json_string in (("text", False), ("partial_json", True)):
            if isinstance(delta.get(field_name), str):
                delta[field_name] = channels.feed((index, field_name), delta[field_name], json_string)
        return [data_event(data, name)]
    if kind == "content_block_stop":
        out = []
        for field_name, delta_type in (("text", "text_delta"), ("partial_json", "input_json_delta")):
            if rest := channels.flush((index, field_name)):
                tail = {"type": "content_block_delta", "index": index, "delta": {"type": delta_type, field_name: rest}}
                out.append(data_event(tail, "content_block_delta"))
        return [*out, data_event(data, name)]
    if kind in ("content_block_start", "message_start"):
        return [data_event(channels.whole(data), name)]
    return [data_event(data, name)]


# The conversation: the system prompt, then the messages.


def messages(body: Json) -> list[Json]:
    found: list[Json] = []
    if body.get("system"):
        found.append({"role": "system", "content": body["system"]})
    listed = body.get("messages")
    return found + ([m for m in listed if isinstance(m, dict)] if isinstance(listed, list) else [])


def with_guidance(body: Json, text: str) -> Json | None:
    new = copy.deepcopy(body)
    guidance = GUIDANCE_PREFIX + text
    system = new.get("system")
    if isinstance(system, list):
        new["system"] = [*system, {"type": "text", "text": guidance}]
    elif isinstance(system, str) and system:
        new["system"] = f"{system}\n\n{guidance}"
    else:
        new["system"] = guidance
    return new


def first_user_text(body: Json) -> str:
    return first_user_message(body.get("messages"))


def provider_key(key: str) -> tuple[str, str]:
    return "x-api-key", key


FORMAT = ApiFormat(
    name="messages",
    provider="anthropic",
    provider_name=semconv.PROVIDER_ANTHROPIC,
    operation=semconv.OPERATION_CHAT,
    recognises=ends_with("messages"),
    error_body=error_body,
    error_event=error_event,
    tool_lists=TOOL_LISTS,
    govern=govern,
    rewriter=Rewriter,
    redact_event=redact_event,
    messages=messages,
    with_guidance=with_guidance,
    first_user_text=first_user_text,
    conversation=provenance.read_messages,
    provider_key=provider_key,
)
