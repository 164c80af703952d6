"""Error responses in the caller's API format, so official SDKs raise readable errors."""

from __future__ import annotations

import json

from mitmproxy import http

from bastion.proxy import mcp

# HTTP status -> (OpenAI error type, Anthropic error type)
_TYPES = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("authentication_error", "authentication_error"),
    403: ("permission_denied", "permission_error"),
    404: ("not_found_error", "not_found_error"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "invalid_request_error"),
    429: ("rate_limit_exceeded", "rate_limit_error"),
    500: ("server_error", "api_error"),
    502: ("upstream_error", "api_error"),
    503: ("service_unavailable", "overloaded_error"),
}


def _jsonrpc_code(status: int) -> int:
    if status == 401:
        return mcp.UNAUTHENTICATED
    if status == 403:
        return mcp.POLICY_DENIED
    return mcp.INTERNAL_ERROR if status >= 500 else mcp.INVALID_REQUEST


def error_body(provider: str, status: int, message: str, code: str) -> dict[str, object]:
    if provider == "mcp":  # a JSON-RPC error, which MCP clients surface with its message
        return mcp.error(None, _jsonrpc_code(status), message, {"code": code})
    openai_type, anthropic_type = _TYPES.get(status, ("invalid_request_error", "invalid_request_error"))
    if provider == "anthropic":
        return {"type": "error", "error": {"type": anthropic_type, "message": message, "code": code}}
    if provider == "openai":
        return {"error": {"message": message, "type": openai_type, "code": code, "param": None}}
    return {"error": {"message": message, "code": code}}


def error_response(provider: str, status: int, message: str, code: str) -> http.Response:
    body = json.dumps(error_body(provider, status, message, code)).encode()
    return http.Response.make(status, body, {"content-type": "application/json", "x-bastion-error": code})
