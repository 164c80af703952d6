"""OpenAI-compatible chat completions, embeddings and model list for the scripted model."""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from bastion.agents import script
from bastion.agents.script import Json, Reply
from bastion.agents.wire import ApiError, json_body, messages_of, record, sse, stream, tools_of

router = APIRouter()

MODELS = ("scripted-small", "scripted-large", "scripted-embed")
EMBEDDING_DIMENSIONS = 16


def chat_turn(body: Json) -> script.Turn:
    messages = messages_of(body, "openai")
    tools = {
        str(t["function"]["name"]): t["function"].get("parameters") or {}
        for t in tools_of(body)
        if isinstance(t.get("function"), dict) and "name" in t["function"]
    }
    users = [m for m in messages if m.get("role") == "user"]
    last = messages[-1]
    return script.Turn(
        user_text=script.text_of(users[-1].get("content")) if users else "",
        all_text=" ".join(script.text_of(m.get("content")) for m in messages),
        tool_result=script.text_of(last.get("content")) if last.get("role") == "tool" else None,
        tools=tools,
    )


def usage(reply: Reply) -> Json:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request) -> Response:
    body = await json_body(request, "openai", ("model", "messages"))
    rid = script.stable_id(body)
    reply = script.answer(chat_turn(body), rid)
    head = {"id": f"chatcmpl-{rid}", "created": int(time.time()), "model": body["model"]}
    if body.get("stream"):
        options = body.get("stream_options")
        with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return stream(_chat_chunks(head, reply, with_usage))
    call = reply.tool_call
    message: Json = {"role": "assistant", "content": reply.text, "refusal": None}
    if call is not None:
        message["tool_calls"] = [
            {
                "id": f"call_{call.key}",
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
        ]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(reply)}
    return JSONResponse({**head, "object": "chat.completion", "choices": [choice], "usage": usage(reply)})


def _finish(reply: Reply) -> str:
    return "tool_calls" if reply.tool_call else "stop"


def _chat_chunks(head: Json, reply: Reply, with_usage: bool) -> Iterator[bytes]:
    extra: Json = {"usage": None} if with_usage else {}

    def chunk(delta: Json, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse({**head, "object": "chat.completion.chunk", "choices": [choice], **extra})

    call = reply.tool_call
    if call is None:
        yield chunk({"role": "assistant", "content": ""})
        for piece in script.split_text(reply.text or ""):
            yield chunk({"content": piece})
    else:
        start = {
            "index": 0,
            "id": f"call_{call.key}",
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        yield chunk({"role": "assistant", "content": None, "tool_calls": [start]})
        for piece in script.split_chars(call.arguments_json):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    yield chunk({}, _finish(reply))
    if with_usage:
        yield sse({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage(reply)})
    yield sse("[DONE]")


def embedding(text: str, dimensions: int) -> list[float]:
    """A unit vector derived from the SHA-256 of the text."""
    raw = b""
    counter = 0
    while len(raw) < 4 * dimensions:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    values = [n / 2**31 - 1.0 for n in struct.unpack(f"<{dimensions}I", raw[: 4 * dimensions])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _inputs(value: Any) -> list[str]:
    """Embedding inputs as texts: a string, a list of strings, or token lists."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [" ".join(map(str, value))]
    if isinstance(value, list) and all(isinstance(v, str | list) for v in value):
        return [v if isinstance(v, str) else " ".join(map(str, v)) for v in value]
    raise ApiError("openai", "Parameter 'input' must be a string, a list of strings or token lists.", param="input")


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> JSONResponse:
    body = await json_body(request, "openai", ("model", "input"))
    texts = _inputs(body["input"])
    dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
    if not isinstance(dimensions, int) or not 1 <= dimensions <= 4096:
        raise ApiError("openai", "Parameter 'dimensions' must be an integer from 1 to 4096.", param="dimensions")
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = embedding(text, dimensions)
        encoded: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(script.count_tokens(t) for t in texts)
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


@router.get("/v1/models")
async def models(request: Request) -> JSONResponse:
    await record(request)
    if "anthropic-version" in request.headers:
        listing = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in MODELS]
        return JSONResponse({"data": listing, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "bastion-scripted"} for m in MODELS]
    return JSONResponse({"object": "list", "data": data})
