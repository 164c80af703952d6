"""Google Gemini's native API: ``POST .../models/<model>:generateContent`` and
``:streamGenerateContent`` (``?alt=sse``).

The model is named by the path, not the body; a request's ``contents`` hold ``parts``: ``text``,
``functionCall`` (``name``, ``args``) and ``functionResponse`` (``name``, ``response``), whose
objects are free-form data. Tools are ``functionDeclarations`` inside ``tools`` entries, a forced
call is ``toolConfig.functionCallingConfig`` with mode ``ANY``. Answers hold ``candidates`` with
the same parts (``streamGenerateContent`` without ``?alt=sse`` answers a JSON array of them);
streamed, each event is a whole ``GenerateContentResponse`` whose text parts are
deltas and whose ``functionCall`` parts arrive whole, so a call is decided in the event that
carries it. A blocked call's part becomes a text part with the explanation. Usage is
``usageMetadata``; a refusal is ``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

from bastion import semconv
from bastion.proxy import jsonedit, provenance
from bastion.proxy.formats.base import GUIDANCE_PREFIX, ApiFormat, Channels, data_event
from bastion.proxy.pii.bodies import texts
from bastion.proxy.toolcalls import (
    FilteredRequest,
    Json,
    Judge,
    ToolCall,
    Verdict,
    blocked_code,
    blocked_message,
    event_json,
)
from bastion.proxy.usage import Usage

_PATH = re.compile(r"/models/([^/:]+):(generateContent|streamGenerateContent)$")
STREAMING = "streamGenerateContent"


def _target(path: str) -> tuple[str, str] | None:
    found = _PATH.search(path.split("?", 1)[0].rstrip("/"))
    return (found.group(1), found.group(2)) if found else None


def recognises(method: str, path: str) -> bool:
    return method == "POST" and _target(path) is not None


def model(body: Json, path: str) -> str | None:
    target = _target(path)
    return target[0] if target else None


def streams(body: Json, path: str) -> bool:
    target = _target(path)
    return target is not None and target[1] == STREAMING


# Errors: google.rpc.Status, with Bastion's code as the reason of an ErrorInfo detail.

_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
}


def error_body(status: int, message: str, code: str) -> Json:
    detail = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": code, "domain": "bastion"}
    error = {"code": status, "message": message, "status": _STATUSES.get(status, "UNKNOWN"), "details": [detail]}
    return {"error": error}


def error_event(message: str, code: str) -> bytes:
    return data_event(error_body(403, message, code))


# Tool calls

FUNCTIONS = "functionDeclarations"


def _parts(body: Json) -> list[tuple[Json, list[Any]]]:
    """Each candidate with its content's parts."""
    found = []
    for candidate in body.get("candidates") or []:
        content = candidate.get("content") if isinstance(candidate, dict) else None
        parts = content.get("parts") if isinstance(content, dict) else None
        if isinstance(parts, list):
            found.append((candidate, parts))
    return found


def _call(part: Any) -> ToolCall | None:
    call = part.get("functionCall") if isinstance(part, dict) else None
    if not isinstance(call, dict):
        return None
    return ToolCall(str(call.get("id") or ""), str(call.get("name") or ""), call.get("args", {}))


def govern(body: Json, judge: Judge) -> list[Verdict]:
    verdicts = []
    for _, parts in _parts(body):
        for position, part in enumerate(parts):
            call = _call(part)
            if call is None:
                continue
            verdict = judge(call)
            verdicts.append(verdict)
            if not verdict.allowed:
                parts[position] = {"text": verdict.explanation}
    return verdicts


class Rewriter:
    """Each event is decided whole: its calls arrive complete in it."""

    def __init__(self, judge: Judge, block: bool) -> None:
        self.judge, self.block = judge, block
        self.closed = False

    def error(self, message: str, code: str) -> bytes:
        return error_event(message, code)

    def event(self, raw: bytes) -> list[bytes]:
        _, data = event_json(raw)
        if data is None or not any(_call(p) for _, parts in _parts(data) for p in parts):
            return [raw]
        data = copy.deepcopy(data)
        verdicts = govern(data, self.judge)
        blocked = [v for v in verdicts if not v.allowed]
        if not blocked:
            return [raw]
        if self.block:
            self.closed = True
            return [self.error(blocked_message(blocked), blocked_code(blocked))]
        return [data_event(data)]

    def end(self) -> list[bytes]:
        return []


def _function_name(declaration: Any) -> str | None:
    name = declaration.get("name") if isinstance(declaration, dict) else None
    return name if isinstance(name, str) else None


def filter_tools(text: str, body: Json, visible: Callable[[str], bool]) -> FilteredRequest:
    """Remove the function declarations the agent may not call; a ``tools`` entry left without any is
    removed, and without tools ``toolConfig`` goes too. Mode ``ANY`` limited to hidden functions forces one."""
    offered = body.get("tools")
    if not isinstance(offered, list):
        return FilteredRequest(None, [], None)
    hidden: list[str] = []
    tools = []
    for tool in offered:
        declarations = tool.get(FUNCTIONS) if isinstance(tool, dict) else None
        if not isinstance(declarations, list):
            tools.append(tool)
            continue
        kept = [d for d in declarations if (name := _function_name(d)) is None or visible(name)]
        hidden += [n for d in declarations if d not in kept and (n := _function_name(d)) is not None]
        if kept:
            tools.append({**tool, FUNCTIONS: kept})
    if not hidden:
        return FilteredRequest(None, [], None)
    changes: dict[str, Any] = {"tools": json.dumps(tools) if tools else None}
    config = body.get("toolConfig")
    calling = config.get("functionCallingConfig") if isinstance(config, dict) else None
    forced = None
    if isinstance(config, dict) and isinstance(calling, dict):
        allowed = calling.get("allowedFunctionNames")
        names = [n for n in allowed if isinstance(n, str)] if isinstance(allowed, list) else []
        left = [n for n in names if n not in hidden]
        if str(calling.get("mode", "")).upper() == "ANY" and names and not left:
            forced = names[0]
        elif not tools:
            changes["toolConfig"] = None
        elif len(left) < len(names):
            changes["toolConfig"] = json.dumps(
                {**config, "functionCallingConfig": {**calling, "allowedFunctionNames": left}}
            )
    return FilteredRequest(jsonedit.edit(text, changes), hidden, forced)


# Personal data in streams: each candidate's text parts are deltas; other parts arrive whole.


def redact_event(channels: Channels, data: Json, name: str) -> list[bytes]:
    for candidate, parts in _parts(data):
        number = candidate.get("index", 0)
        for position, part in enumerate(parts):
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                part["text"] = channels.feed((number, bool(part.get("thought"))), part["text"], False)
            else:
                parts[position] = channels.whole(part)
        if candidate.get("finishReason"):
            for key in [k for k in channels.open() if isinstance(k, tuple) and k[0] == number]:
                if rest := channels.flush(key):
                    parts.append({"text": rest, "thought": True} if key[1] else {"text": rest})
    return [data_event(data, name)]


# Usage and the conversation


def answers(body: Any) -> list[Json]:
    """A response, or the array of responses ``streamGenerateContent`` answers without ``?alt=sse``."""
    found = body if isinstance(body, list) else [body]
    return [b for b in found if isinstance(b, dict)]


def read_usage(usage: Usage, body: Any) -> None:
    if isinstance(body, list):
        for answer in answers(body):
            read_usage(usage, answer)
        return
    if not isinstance(body, dict):
        return
    if isinstance(body.get("modelVersion"), str):
        usage.response_model = body["modelVersion"]
    if isinstance(body.get("responseId"), str) and usage.response_id is None:
        usage.response_id = body["responseId"]
    metadata = body.get("usageMetadata")
    if isinstance(metadata, dict):
        if isinstance(metadata.get("promptTokenCount"), int) and metadata["promptTokenCount"] > 0:
            usage.input_tokens = metadata["promptTokenCount"]
        if isinstance(metadata.get("candidatesTokenCount"), int):
            usage.output_tokens = metadata["candidatesTokenCount"]
    for candidate in body.get("candidates") or []:
        reason = candidate.get("finishReason") if isinstance(candidate, dict) else None
        if isinstance(reason, str) and reason not in usage.finish_reasons:
            usage.finish_reasons.append(reason)


FREE_KEYS = frozenset({"args", "response"})  # functionCall.args, functionResponse.response


def messages(body: Json) -> list[Json]:
    found: list[Json] = []
    system = body.get("systemInstruction")
    if isinstance(system, dict):
        found.append({"role": "system", "content": system.get("parts")})
    contents = body.get("contents")
    for item in contents if isinstance(contents, list) else []:
        if isinstance(item, dict):
            found.append({"role": item.get("role", "user"), "content": item.get("parts")})
    return found


def with_guidance(body: Json, text: str) -> Json | None:
    new = copy.deepcopy(body)
    system = new.get("systemInstruction")
    part = {"text": GUIDANCE_PREFIX + text}
    if isinstance(system, dict) and isinstance(system.get("parts"), list):
        system["parts"].append(part)
    else:
        new["systemInstruction"] = {"parts": [part]}
    return new


def first_user_text(body: Json) -> str:
    contents = body.get("contents")
    for item in contents if isinstance(contents, list) else []:
        if isinstance(item, dict) and item.get("role", "user") == "user":
            return "\n".join(texts({"content": item.get("parts")}, FREE_KEYS))
    return ""


def provider_key(key: str) -> tuple[str, str]:
    return "x-goog-api-key", key


FORMAT = ApiFormat(
    name="generateContent",
    provider="gemini",
    provider_name=semconv.PROVIDER_GCP_GEMINI,
    operation=semconv.OPERATION_CHAT,
    recognises=recognises,
    error_body=error_body,
    error_event=error_event,
    model=model,
    streams=streams,
    read_usage=read_usage,
    filter_tools=filter_tools,
    govern=govern,
    answers=answers,
    rewriter=Rewriter,
    redact_event=redact_event,
    free_keys=FREE_KEYS,
    messages=messages,
    with_guidance=with_guidance,
    first_user_text=first_user_text,
    conversation=provenance.read_gemini,
    provider_key=provider_key,
)
