"""HTTP plumbing shared by the scripted model's APIs: recording, JSON bodies, errors and SSE."""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from bastion.agents.script import Json

Api = Literal["openai", "anthropic", "gemini"]

# Seconds between streamed events, so a stream arrives in visible pieces. Tests that check
# streaming is not buffered somewhere on the way raise it with BASTION_SCRIPTED_CHUNK_DELAY.
CHUNK_DELAY = float(os.environ.get("BASTION_SCRIPTED_CHUNK_DELAY") or 0.01)
MAX_RECORDS = 1000
# A model that answers every call with a 500, as a broken upstream does (circuit breaker tests).
FAILING_MODEL = "scripted-failing"


class Recorder:
    """Every request the server received, oldest first (the last ``MAX_RECORDS``)."""

    def __init__(self) -> None:
        self._records: deque[Json] = deque(maxlen=MAX_RECORDS)

    def add(self, request: Request, raw: bytes) -> None:
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, RecursionError):  # recorded all the same: tests check what arrived
            body = None
        self._records.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": dict(request.headers),
                "body": body,
            }
        )

    def all(self) -> list[Json]:
        return list(self._records)

    def clear(self) -> None:
        self._records.clear()


class ApiError(Exception):
    """A request error, rendered in the format of the API that was called."""

    def __init__(self, api: Api, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.api, self.message, self.status, self.param = api, message, status, param

    def response(self) -> JSONResponse:
        if self.api == "gemini":
            status = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND"}.get(self.status, "UNKNOWN")
            return JSONResponse(
                {"error": {"code": self.status, "message": self.message, "status": status}}, self.status
            )
        if self.api == "anthropic":
            kind = "not_found_error" if self.status == 404 else "invalid_request_error"
            kind = "api_error" if self.status >= 500 else kind
            body: Json = {"type": "error", "error": {"type": kind, "message": self.message}}
        else:
            body = {
                "error": {
                    "message": self.message,
                    "type": "server_error" if self.status >= 500 else "invalid_request_error",
                    "param": self.param,
                    "code": "not_found" if self.status == 404 else None,
                }
            }
        return JSONResponse(body, status_code=self.status)


async def record(request: Request) -> bytes:
    """Record the request and return its raw body."""
    raw = await request.body()
    recorder: Recorder = request.app.state.recorder
    recorder.add(request, raw)
    return raw


async def json_body(request: Request, api: Api, required: Iterable[str]) -> Json:
    """Record the request and parse its JSON object body; missing ``required`` fields are a 400."""
    raw = await record(request)
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise ApiError(api, f"Request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise ApiError(api, "Request body must be a JSON object.")
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ApiError(api, "Request body holds a lone UTF-16 surrogate, which is not text.") from None
    for name in required:
        if body.get(name) in (None, "", []):
            raise ApiError(api, f"Missing required parameter: '{name}'.", param=name)
    if "model" in required and not isinstance(body["model"], str):
        raise ApiError(api, "Parameter 'model' must be a string.", param="model")
    if body.get("model") == FAILING_MODEL:  # Gemini names its model in the path
        raise ApiError(api, f"The model {FAILING_MODEL} fails every call on purpose (a broken upstream).", status=500)
    return body


def messages_of(body: Json, api: Api) -> list[Json]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ApiError(api, "Parameter 'messages' must be a list of objects.", param="messages")
    return messages


def tools_of(body: Json) -> list[Json]:
    tools = body.get("tools")
    return [t for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event."""
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def stream(events: Iterable[bytes]) -> StreamingResponse:
    """Send the events one write at a time, with a short pause between them."""

    async def paced() -> AsyncIterator[bytes]:
        for event in events:
            yield event
            await asyncio.sleep(CHUNK_DELAY)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(paced(), media_type="text/event-stream", headers=headers)
