"""OpenAI-compatible Responses API (``POST /v1/responses``) for the scripted model."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from bastion.agents import script
from bastion.agents.script import Json, Reply
from bastion.agents.wire import ApiError, json_body, sse, stream, tools_of

router = APIRouter()


def responses_turn(body: Json) -> script.Turn:
    items: Any = body["input"]
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ApiError("openai", "Parameter 'input' must be a string or a list of items.", param="input")
    tools = {
        str(t["name"]): t.get("parameters") or {} for t in tools_of(body) if t.get("type") == "function" and "name" in t
    }
    users = [i for i in items if i.get("role") == "user"]
    last = items[-1]
    texts = [script.text_of(body.get("instructions"))] + [script.text_of(i) for i in items]
    return script.Turn(
        user_text=script.text_of(users[-1].get("content")) if users else "",
        all_text=" ".join(texts),
        tool_result=script.text_of(last.get("output")) if last.get("type") == "function_call_output" else None,
        tools=tools,
    )


def _output_item(rid: str, reply: Reply, done: bool) -> Json:
    status = "completed" if done else "in_progress"
    call = reply.tool_call
    if call is not None:
        arguments = call.arguments_json if done else ""
        return {
            "type": "function_call",
            "id": f"fc_{rid}",
            "call_id": f"call_{call.key}",
            "name": call.name,
            "arguments": arguments,
            "status": status,
        }
    content = [_text_part(reply.text or "")] if done else []
    return {"type": "message", "id": f"msg_{rid}", "status": status, "role": "assistant", "content": content}


def _text_part(text: str) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _response(body: Json, rid: str, reply: Reply, done: bool) -> Json:
    usage = None
    if done:
        usage = {
            "input_tokens": reply.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": reply.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }
    return {
        "id": f"resp_{rid}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed" if done else "in_progress",
        "model": body["model"],
        "output": [_output_item(rid, reply, done=True)] if done else [],
        "parallel_tool_calls": True,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": tools_of(body),
        "instructions": body.get("instructions"),
        "error": None,
        "incomplete_details": None,
        "usage": usage,
    }


@router.post("/v1/responses", response_model=None)
async def responses(request: Request) -> Response:
    body = await json_body(request, "openai", ("model", "input"))
    rid = script.stable_id(body)
    reply = script.answer(responses_turn(body), rid)
    if body.get("stream"):
        return stream(_events(body, rid, reply))
    return JSONResponse(_response(body, rid, reply, done=True))


def _events(body: Json, rid: str, reply: Reply) -> Iterator[bytes]:
    sequence = itertools.count()

    def event(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, "sequence_number": next(sequence), **fields}, event=kind)

    at = {"item_id": _output_item(rid, reply, done=False)["id"], "output_index": 0}
    yield event("response.created", response=_response(body, rid, reply, done=False))
    yield event("response.in_progress", response=_response(body, rid, reply, done=False))
    yield event("response.output_item.added", output_index=0, item=_output_item(rid, reply, done=False))
    call = reply.tool_call
    if call is None:
        text = reply.text or ""
        yield event("response.content_part.added", **at, content_index=0, part=_text_part(""))
        for piece in script.split_text(text):
            yield event("response.output_text.delta", **at, content_index=0, delta=piece, logprobs=[])
        yield event("response.output_text.done", **at, content_index=0, text=text, logprobs=[])
        yield event("response.content_part.done", **at, content_index=0, part=_text_part(text))
    else:
        for piece in script.split_chars(call.arguments_json):
            yield event("response.function_call_arguments.delta", **at, delta=piece)
        yield event("response.function_call_arguments.done", **at, name=call.name, arguments=call.arguments_json)
    yield event("response.output_item.done", output_index=0, item=_output_item(rid, reply, done=True))
    yield event("response.completed", response=_response(body, rid, reply, done=True))
