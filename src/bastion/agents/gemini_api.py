"""Gemini-compatible ``generateContent`` and ``streamGenerateContent`` (``?alt=sse``) for the scripted
model, at ``POST /v1beta/models/<model>:<method>`` (or ``/v1/...``, which ``google-genai`` 3 calls)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from bastion.agents import script
from bastion.agents.script import Json, Reply
from bastion.agents.wire import ApiError, json_body, stream, tools_of

router = APIRouter()
METHODS = ("generateContent", "streamGenerateContent")


def _parts(content: Any) -> list[Json]:
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _result(part: Json) -> str:
    response = part["functionResponse"].get("response") if isinstance(part["functionResponse"], dict) else None
    return script.text_of(response) or json.dumps(response)


def contents_turn(body: Json) -> script.Turn:
    contents = body.get("contents")
    if not isinstance(contents, list) or not all(isinstance(c, dict) for c in contents):
        raise ApiError("gemini", "Parameter 'contents' must be a list of objects.")
    user = [c for c in contents if c.get("role", "user") == "user"]
    user_texts = [script.text_of([p for p in _parts(c) if "text" in p]) for c in user]
    last = _parts(contents[-1]) if contents[-1].get("role", "user") == "user" else []
    results = [_result(p) for p in last if "functionResponse" in p]
    declarations = [d for t in tools_of(body) for d in t.get("functionDeclarations") or [] if isinstance(d, dict)]
    return script.Turn(
        user_text=next((t for t in reversed(user_texts) if t), ""),
        all_text=" ".join(script.text_of(_parts(c)) for c in [body.get("systemInstruction"), *contents]),
        tool_result=" ".join(results) if results else None,
        tools={str(d["name"]): d.get("parameters") or d.get("parametersJsonSchema") or {} for d in declarations},
    )


def _response(model: str, rid: str, reply: Reply, parts: list[Json], done: bool) -> Json:
    candidate: Json = {"content": {"role": "model", "parts": parts}, "index": 0}
    if done:
        candidate["finishReason"] = "STOP"
    out = reply.output_tokens if done else 1
    usage = {"promptTokenCount": reply.input_tokens, "candidatesTokenCount": out}
    return {
        "candidates": [candidate],
        "usageMetadata": {**usage, "totalTokenCount": reply.input_tokens + out},
        "modelVersion": model,
        "responseId": rid,
    }


def _call_part(reply: Reply) -> Json | None:
    call = reply.tool_call
    if call is None:
        return None
    return {"functionCall": {"id": f"call_{call.key}", "name": call.name, "args": call.arguments}}


@router.post("/v1beta/models/{target}", response_model=None)
@router.post("/v1/models/{target}", response_model=None)
async def generate(request: Request, target: str) -> Response:
    model, _, method = target.partition(":")
    if method not in METHODS:
        raise ApiError("gemini", f"Unknown method: {method or target}", status=404)
    body = await json_body(request, "gemini", ("contents",))
    rid = script.stable_id({"model": model, **body})
    reply = script.answer(contents_turn(body), rid)
    call = _call_part(reply)
    if method == "streamGenerateContent" and request.query_params.get("alt") == "sse":
        return stream(_events(model, rid, reply, call))
    if method == "streamGenerateContent":  # without alt=sse: the chunks as one JSON array
        return JSONResponse([json.loads(e.removeprefix(b"data: ")) for e in _events(model, rid, reply, call)])
    return JSONResponse(_response(model, rid, reply, [call or {"text": reply.text or ""}], done=True))


def _events(model: str, rid: str, reply: Reply, call: Json | None) -> Iterator[bytes]:
    """Whole responses as events, ending with a blank line written ``\\r\\n\\r\\n`` as Google's servers do."""
    texts = [[{"text": piece}] for piece in script.split_text(reply.text or "")]
    chunks = [[call]] if call is not None else texts
    for n, parts in enumerate(chunks, 1):
        yield f"data: {json.dumps(_response(model, rid, reply, parts, done=n == len(chunks)))}\r\n\r\n".encode()
