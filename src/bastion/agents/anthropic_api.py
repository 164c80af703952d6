"""Anthropic-compatible Messages API (``POST /v1/messages``) for the scripted model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from bastion.agents import script
from bastion.agents.script import Json, Reply
from bastion.agents.wire import json_body, messages_of, sse, stream, tools_of

router = APIRouter()


def _blocks(content: Any) -> list[Json]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def messages_turn(body: Json) -> script.Turn:
    messages = messages_of(body, "anthropic")
    user_texts = [
        script.text_of([b for b in _blocks(m.get("content")) if b.get("type") == "text"])
        for m in messages
        if m.get("role") == "user"
    ]
    last = _blocks(messages[-1].get("content")) if messages[-1].get("role") == "user" else []
    results = [b for b in last if b.get("type") == "tool_result"]
    return script.Turn(
        user_text=next((t for t in reversed(user_texts) if t), ""),
        all_text=" ".join([script.text_of(body.get("system"))] + [script.text_of(m.get("content")) for m in messages]),
        tool_result=script.text_of(results) if results else None,
        tools={str(t["name"]): t.get("input_schema") or {} for t in tools_of(body) if "name" in t},
    )


def _content(reply: Reply) -> list[Json]:
    call = reply.tool_call
    if call is None:
        return [{"type": "text", "text": reply.text or ""}]
    return [{"type": "tool_use", "id": f"toolu_{call.key}", "name": call.name, "input": call.arguments}]


def _message(body: Json, rid: str, reply: Reply, done: bool) -> Json:
    return {
        "id": f"msg_{rid}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": _content(reply) if done else [],
        "stop_reason": ("tool_use" if reply.tool_call else "end_turn") if done else None,
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens if done else 1},
    }


@router.post("/v1/messages", response_model=None)
async def messages(request: Request) -> Response:
    body = await json_body(request, "anthropic", ("model", "messages"))
    rid = script.stable_id(body)
    reply = script.answer(messages_turn(body), rid)
    if body.get("stream"):
        return stream(_events(body, rid, reply))
    return JSONResponse(_message(body, rid, reply, done=True))


def _events(body: Json, rid: str, reply: Reply) -> Iterator[bytes]:
    def event(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, **fields}, event=kind)

    yield event("message_start", message=_message(body, rid, reply, done=False))
    block = _content(reply)[0]
    if block["type"] == "text":
        yield event("content_block_start", index=0, content_block={"type": "text", "text": ""})
        deltas = [{"type": "text_delta", "text": p} for p in script.split_text(block["text"])]
    else:
        yield event("content_block_start", index=0, content_block={**block, "input": {}})
        json_args = reply.tool_call.arguments_json if reply.tool_call else "{}"
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in script.split_chars(json_args)]
    yield event("ping")
    for delta in deltas:
        yield event("content_block_delta", index=0, delta=delta)
    yield event("content_block_stop", index=0)
    stop_reason = _message(body, rid, reply, done=True)["stop_reason"]
    yield event(
        "message_delta",
        delta={"stop_reason": stop_reason, "stop_sequence": None},
        usage={"output_tokens": reply.output_tokens},
    )
    yield event("message_stop")
