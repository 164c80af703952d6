"""OpenAI chat completions (``POST .../chat/completions``), and the error body every OpenAI API shares.

Tool calls: ``tool_calls`` (and legacy ``function_call``) in responses and chunks. A blocked call
leaves the message; the explanation joins its ``content`` and, when no call is left,
``finish_reason`` becomes ``stop``. Streamed, a choice's tool-call fragments are held from the first
one until the choice finishes (a call is only complete then); the held chunks then pass unchanged
when every call is allowed, or are rewritten without the blocked calls, the remaining calls
renumbered from 0, and a content chunk with the explanation before the finishing chunk. Chunks
without tool calls pass as they come.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from bastion import semconv
from bastion.proxy import provenance
from bastion.proxy.formats.base import GUIDANCE_PREFIX, ApiFormat, Channels, data_event, ends_with, json_event
from bastion.proxy.pii.bodies import texts
from bastion.proxy.sse import parse_event
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

CALL_FINISHES = ("tool_calls", "function_call")
LEGACY = -1  # the tool-call "index" of a legacy function_call


def _tool_name(tool: Any) -> str | None:
    """The name of a function or custom tool (``{"type": ..., <type>: {"name": ...}}``)."""
    kind = tool.get("type", "function") if isinstance(tool, dict) else None
    spec = tool.get(kind) if isinstance(tool, dict) and kind in ("function", "custom") else None
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if isinstance(name, str) else None


def _legacy_name(value: Any) -> str | None:
    name = value.get("name") if isinstance(value, dict) else None
    return name if isinstance(name, str) else None


TOOL_LISTS = (
    ToolList("tools", _tool_name, "tool_choice", _tool_name, ("tool_choice", "parallel_tool_calls")),
    ToolList("functions", _legacy_name, "function_call", _legacy_name, ("function_call",)),
)


def _call(call: Any) -> ToolCall:
    """A complete tool call; a custom tool's free-form input is decided as the argument ``input``."""
    call = call if isinstance(call, dict) else {}
    pending = _Pending()
    pending.add(call)
    return pending.call()


def _joined(content: Any, text: str) -> str:
    return f"{content}\n\n{text}" if isinstance(content, str) and content else text


def govern(body: Json, judge: Judge) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for choice in body.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        blocked: list[Verdict] = []
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            kept = []
            for call in calls:
                verdict = judge(_call(call))
                verdicts.append(verdict)
                if verdict.allowed:
                    kept.append(call)
                else:
                    blocked.append(verdict)
            if kept and blocked:
                message["tool_calls"] = kept
            elif blocked:
                message.pop("tool_calls")
        legacy = message.get("function_call")
        if isinstance(legacy, dict):
            verdict = judge(_call({"function": legacy}))
            verdicts.append(verdict)
            if not verdict.allowed:
                blocked.append(verdict)
                message.pop("function_call")
        if not blocked:
            continue
        message["content"] = _joined(message.get("content"), "\n".join(v.explanation for v in blocked))
        if (
            choice.get("finish_reason") in CALL_FINISHES
            and not message.get("tool_calls")
            and "function_call" not in message
        ):
            choice["finish_reason"] = "stop"
    return verdicts


Key = tuple[int, int]  # (choice index, tool-call index or LEGACY)


@dataclass
class _Pending:
    """A tool call assembled from fragments, concatenating strings as the openai SDK does."""

    id: str = ""
    kind: str = "function"
    name: str = ""
    arguments: str = ""
    input: str | None = None  # a custom tool's

    def add(self, fragment: Json) -> None:
        if isinstance(fragment.get("id"), str):
            self.id += fragment["id"]
        if fragment.get("type") == "custom" or isinstance(fragment.get("custom"), dict):
            self.kind = "custom"
        spec = fragment.get(self.kind) if self.kind in fragment else fragment  # a legacy function_call is bare
        if not isinstance(spec, dict):
            return
        if isinstance(spec.get("name"), str):
            self.name += spec["name"]
        if isinstance(spec.get("arguments"), str):
            self.arguments += spec["arguments"]
        if isinstance(spec.get("input"), str):
            self.input = (self.input or "") + spec["input"]

    def call(self) -> ToolCall:
        if self.kind == "custom":
            return ToolCall(self.id, self.name, {"input": self.input} if self.input is not None else None)
        return ToolCall(self.id, self.name, self.arguments)


def _fragments(data: Json) -> list[tuple[Key, Json]]:
    found = []
    for choice in data.get("choices") or []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        number = choice.get("index", 0)
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                found.append(((number, call.get("index", 0)), call))
        if isinstance(delta.get("function_call"), dict):
            found.append(((number, LEGACY), delta["function_call"]))
    return found


class Rewriter:
    def __init__(self, judge: Judge, block: bool) -> None:
        self.judge, self.block = judge, block
        self.closed = False
        self._held: list[tuple[bytes, Json]] = []
        self._pending: dict[Key, _Pending] = {}
        self._finished: set[int] = set()
        self._decided: set[Key] = set()
        self._index: dict[Key, int] = {}  # allowed call -> its index as the agent sees it
        self._next_index: dict[int, int] = {}
        self._with_calls: set[int] = set()  # choices that kept a tool call
        self._with_text: set[int] = set()  # choices that sent content

    def error(self, message: str, code: str) -> bytes:
        return sse_event(error_body(403, message, code))

    def event(self, raw: bytes) -> list[bytes]:
        _, data = event_json(raw)
        if data is None and self._held and parse_event(raw).data != "[DONE]":
            self._held.append((raw, {}))  # a comment or keep-alive between fragments
            return []
        if data is None or not isinstance(data.get("choices"), list):
            return [*self._resolve(), raw]  # [DONE], an error: the response is over
        for choice in data["choices"]:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and delta.get("content"):
                self._with_text.add(choice.get("index", 0))
        fragments = _fragments(data)
        fresh = [(key, f) for key, f in fragments if key not in self._decided]
        if not self._held and not fresh:
            # Fragments of a call already decided would change it afterwards: they are dropped.
            return self._rewrite([(raw, data)], set(), {}) if fragments else [raw]
        self._held.append((raw, data))
        for key, fragment in fresh:
            self._pending.setdefault(key, _Pending()).add(fragment)
        for choice in data["choices"]:
            if isinstance(choice, dict) and choice.get("finish_reason"):
                self._finished.add(choice.get("index", 0))
        return [] if {c for c, _ in self._pending} - self._finished else self._resolve()

    def end(self) -> list[bytes]:
        return self._resolve()

    def _resolve(self) -> list[bytes]:
        if not self._held:
            return []
        held, pending = self._held, self._pending
        self._held, self._pending, self._finished = [], {}, set()
        verdicts = {key: self.judge(p.call()) for key, p in sorted(pending.items())}
        self._decided.update(verdicts)
        blocked = {key: v for key, v in verdicts.items() if not v.allowed}
        if blocked and self.block:
            self.closed = True
            return [self.error(blocked_message(blocked.values()), blocked_code(blocked.values()))]
        keep = {key for key, v in verdicts.items() if v.allowed}
        for choice, index in sorted(keep):
            self._with_calls.add(choice)
            if index != LEGACY:
                self._index[(choice, index)] = self._next_index.get(choice, 0)
                self._next_index[choice] = self._index[(choice, index)] + 1
        unchanged = all(
            key in keep and self._index.get(key, LEGACY) == key[1] for _, d in held for key, _ in _fragments(d)
        )
        if not blocked and unchanged:
            return [raw for raw, _ in held]
        explain: dict[int, str] = {}
        for (choice, _), verdict in blocked.items():
            explain[choice] = "\n".join(filter(None, [explain.get(choice), verdict.explanation]))
        return self._rewrite(held, keep, explain)

    def _rewrite(self, held: list[tuple[bytes, Json]], keep: set[Key], explain: dict[int, str]) -> list[bytes]:
        out: list[bytes] = []
        last: Json = {}
        for raw, original in held:
            if not original:
                out.append(raw)  # not JSON: passed as it came
                continue
            data = last = copy.deepcopy(original)
            choices = []
            for choice in data["choices"]:
                if not isinstance(choice, dict):
                    choices.append(choice)
                    continue
                number = choice.get("index", 0)
                touched = self._strip(number, choice.get("delta"), keep)
                finish = choice.get("finish_reason")
                if finish and number in explain:
                    out.append(self._text_chunk(data, number, explain.pop(number)))
                    if finish in CALL_FINISHES and number not in self._with_calls:
                        choice["finish_reason"] = "stop"
                if touched and not choice.get("delta") and not finish and not choice.get("logprobs"):
                    continue  # it only carried blocked fragments
                choices.append(choice)
            if choices or not data["choices"] or data.get("usage"):
                data["choices"] = choices
                out.append(sse_event(data))
        # Choices that never finished (the stream was cut short) still get their explanation.
        out += [self._text_chunk(last, number, text) for number, text in explain.items()]
        return out

    def _strip(self, number: int, delta: Any, keep: set[Key]) -> bool:
        """Remove fragments of calls not kept and renumber the rest; True if the delta had any."""
        if not isinstance(delta, dict):
            return False
        touched = False
        if isinstance(delta.get("tool_calls"), list):
            touched = True
            calls = [
                {**c, "index": self._index[(number, c.get("index", 0))]}
                for c in delta["tool_calls"]
                if isinstance(c, dict) and (number, c.get("index", 0)) in keep
            ]
            if calls:
                delta["tool_calls"] = calls
            else:
                del delta["tool_calls"]
        if "function_call" in delta:
            touched = True
            if (number, LEGACY) not in keep:
                del delta["function_call"]
        return touched

    def _text_chunk(self, envelope: Json, number: int, text: str) -> bytes:
        if number in self._with_text:
            text = "\n\n" + text
        chunk = {k: v for k, v in envelope.items() if k != "choices"}
        if "usage" in chunk:
            chunk["usage"] = None
        chunk["choices"] = [{"index": number, "delta": {"content": text}, "logprobs": None, "finish_reason": None}]
        return sse_event(chunk)


# Errors: the body every OpenAI API answers with.

# HTTP status -> OpenAI's error type
_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_denied",
    404: "not_found_error",
    # OpenAI's own rate-limit type, so the SDK's backoff retries after Retry-After.
    429: "requests",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
}


def error_body(status: int, message: str, code: str) -> Json:
    kind = _ERROR_TYPES.get(status, "invalid_request_error")
    return {"error": {"message": message, "type": kind, "code": code, "param": None}}


def error_event(message: str, code: str) -> bytes:
    return json_event(error_body(403, message, code))


# Personal data in streams: a choice's content, and each call's argument fragments.


def redact_event(channels: Channels, data: Json, name: str) -> list[bytes]:
    for choice in data.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        number = choice.get("index", 0)
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            continue
        if isinstance(delta.get("content"), str):
            delta["content"] = channels.feed(("content", number), delta["content"], False)
        for call in delta.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                key = ("args", number, call.get("index", 0))
                function["arguments"] = channels.feed(key, function["arguments"], True)
        if choice.get("finish_reason"):
            rest = channels.flush(("content", number))
            if rest:
                delta["content"] = (delta.get("content") or "") + rest
            for key in [k for k in channels.open() if isinstance(k, tuple) and k[:2] == ("args", number)]:
                if rest := channels.flush(key):
                    delta.setdefault("tool_calls", []).append({"index": key[2], "function": {"arguments": rest}})
    return [data_event(data, name)]


def redact_other(channels: Channels, raw: bytes) -> list[bytes]:
    """``[DONE]``: the stream ends without a finish_reason; what is held goes out in one last chunk."""
    deltas = {}
    for key in channels.open():
        rest = channels.flush(key)
        if rest and isinstance(key, tuple) and key[0] == "content":
            deltas[key[1]] = {"content": rest}
    choices = [{"index": n, "delta": d, "finish_reason": None} for n, d in deltas.items()]
    last = [data_event({"object": "chat.completion.chunk", "choices": choices})] if choices else []
    return [*last, raw]


# The conversation.


def messages(body: Json) -> list[Json]:
    found = body.get("messages")
    return [m for m in found if isinstance(m, dict)] if isinstance(found, list) else []


def with_guidance(body: Json, text: str) -> Json | None:
    new = copy.deepcopy(body)
    if not isinstance(new.get("messages"), list):
        return None
    new["messages"].append({"role": "system", "content": GUIDANCE_PREFIX + text})
    return new


def first_user_text(body: Json) -> str:
    return first_user_message(body.get("messages"))


def first_user_message(items: Any) -> str:
    """The first user message's texts, joined (chat messages and Responses input items alike)."""
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("role") == "user":
            return "\n".join(texts({"content": item.get("content")}))
    return ""


FORMAT = ApiFormat(
    name="chat.completions",
    provider="openai",
    provider_name=semconv.PROVIDER_OPENAI,
    operation=semconv.OPERATION_CHAT,
    recognises=ends_with("chat/completions"),
    error_body=error_body,
    error_event=error_event,
    tool_lists=TOOL_LISTS,
    govern=govern,
    rewriter=Rewriter,
    redact_event=redact_event,
    redact_other=redact_other,
    messages=messages,
    with_guidance=with_guidance,
    first_user_text=first_user_text,
    conversation=provenance.read_chat,
)
