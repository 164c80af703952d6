"""Error responses in the caller's API format, so official SDKs raise readable errors.

Who is answered is a format (a recognised model call: its format writes the body), a route's
provider (before a call is recognised: the provider's first format, see ``formats``), ``mcp`` (a
JSON-RPC error) or ``http`` (a plain ``{"error": ...}``).
"""

from __future__ import annotations

import json

from mitmproxy import http

from bastion.proxy import formats, mcp
from bastion.proxy.formats import ApiFormat


def _jsonrpc_code(status: int) -> int:
    if status == 401:
        return mcp.UNAUTHENTICATED
    if status == 403:
        return mcp.POLICY_DENIED
    if status == 429:
        return mcp.RATE_LIMITED
    return mcp.INTERNAL_ERROR if status >= 500 else mcp.INVALID_REQUEST


def error_body(caller: ApiFormat | str, status: int, message: str, code: str) -> dict[str, object]:
    """``caller``: the call's format, or a route's provider."""
    if caller == "mcp":  # a JSON-RPC error, which MCP clients surface with its message
        return mcp.error(None, _jsonrpc_code(status), message, {"code": code})
    fmt = caller if isinstance(caller, ApiFormat) else formats.for_provider(caller)
    if fmt is not None:
        return fmt.error_body(status, message, code)
    return {"error": {"message": message, "code": code}}


def error_response(
    caller: ApiFormat | str, status: int, message: str, code: str, retry_after: int | None = None
) -> http.Response:
    """With ``retry_after`` (seconds), a Retry-After header says when to try again."""
    body = json.dumps(error_body(caller, status, message, code)).encode()
    headers = {"content-type": "application/json", "x-bastion-error": code}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    return http.Response.make(status, body, headers)
