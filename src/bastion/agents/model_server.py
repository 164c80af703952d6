"""The scripted model server: an offline, deterministic stand-in for OpenAI, Anthropic and Gemini.

The official ``openai`` SDK works against ``http://HOST:PORT/v1``, the ``anthropic`` and
``google-genai`` SDKs against ``http://HOST:PORT``, streaming or not. What the model answers is defined in
:mod:`bastion.agents.script` (text reply, tool call on ``call <tool>``, tool-result echo).

Endpoints:

- ``POST /v1/chat/completions``, ``POST /v1/responses``, ``POST /v1/embeddings``, ``GET /v1/models``
  (OpenAI; ``GET /v1/models`` answers in Anthropic's format when ``anthropic-version`` is sent);
- ``POST /v1/messages`` (Anthropic);
- ``POST /v1beta/models/<model>:generateContent`` and ``:streamGenerateContent`` (Gemini; ``/v1/`` too);
- ``GET /_scripted/requests`` lists every request received (method, path, query, headers, JSON
  body or null), oldest first; ``DELETE /_scripted/requests`` clears the list;
- ``GET /healthz`` (not recorded).

Any other path is recorded and answered 404. Bad input (malformed JSON, a lone UTF-16 surrogate,
missing ``model`` / ``messages`` / ``input`` / ``contents``) is a 400 in the called API's error
format; a call to the model ``scripted-failing`` is a 500 (a broken upstream). The reply model is
the request's model.
"""

from __future__ import annotations

import socket

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bastion.agents import anthropic_api, gemini_api, openai_api, openai_responses
from bastion.agents.wire import Api, ApiError, Recorder, record
from bastion.listen import serve_asgi


def create_app() -> FastAPI:
    app = FastAPI(title="Bastion scripted model", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.recorder = Recorder()

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/_scripted/requests")
    async def requests() -> JSONResponse:
        return JSONResponse(app.state.recorder.all())

    @app.delete("/_scripted/requests", status_code=204)
    async def clear_requests() -> Response:
        app.state.recorder.clear()
        return Response(status_code=204)

    app.include_router(openai_api.router)
    app.include_router(openai_responses.router)
    app.include_router(anthropic_api.router)
    app.include_router(gemini_api.router)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    async def unknown(request: Request, path: str) -> JSONResponse:
        await record(request)
        api: Api = (
            "anthropic" if path.startswith("v1/messages") else "gemini" if path.startswith("v1beta/") else "openai"
        )
        raise ApiError(api, f"Unknown endpoint: {request.method} /{path}", status=404)

    return app


def serve(sock: socket.socket, log_level: str = "warning") -> None:
    serve_asgi(create_app(), sock, log_level)
