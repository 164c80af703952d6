"""MCP over streamable HTTP as plain values: JSON-RPC messages in; errors, events and tool lists out.

Two protocol revisions share the wire. Handshake-era revisions (mcp 1.x clients) open with
``initialize``, keep an ``Mcp-Session-Id`` and usually answer a POST with an SSE stream. The
2026-07-28 revision (mcp 2.x clients) sends self-contained requests whose ``MCP-Protocol-Version``
header names it and usually gets plain JSON back. As in the SDK's server, a request whose protocol
header is absent or a handshake-era version belongs to the older revisions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bastion.proxy import jsonlimits
from bastion.proxy.config import MCP_MOUNT
from bastion.proxy.sse import EventBuffer

# JSON-RPC error codes. Bastion's own come from the implementation-defined band -32000..-32019,
# avoiding -32000 and -32001, which the mcp SDKs use for closed connections and timeouts.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
POLICY_DENIED = -32010
APPROVAL_REQUIRED = -32011
UNAUTHENTICATED = -32012
# A limit refused the call for now (data.retry_after says when to try again).
RATE_LIMITED = -32013

SESSION_HEADER = "mcp-session-id"
PROTOCOL_HEADER = "mcp-protocol-version"
HANDSHAKE_VERSIONS = frozenset({"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"})
TRACE_KEYS = ("traceparent", "tracestate")
TOOLS_CALL = "tools/call"
TOOLS_LIST = "tools/list"
_LINE = re.compile(rb"\r\n|\r|\n")

Json = dict[str, Any]
RequestId = str | int


class JsonRpcError(ValueError):
    """A message Bastion refuses, with the JSON-RPC code to answer with."""

    def __init__(self, code: int, message: str, request_id: RequestId | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class Message:
    """One JSON-RPC message: a request (method and id), a notification (method) or a response."""

    body: Json

    @property
    def method(self) -> str | None:
        method = self.body.get("method")
        return method if isinstance(method, str) else None

    @property
    def id(self) -> RequestId | None:
        found = self.body.get("id")
        return found if isinstance(found, str | int) and not isinstance(found, bool) else None

    @property
    def is_request(self) -> bool:
        return self.method is not None and "id" in self.body

    @property
    def params(self) -> Json:
        params = self.body.get("params")
        return params if isinstance(params, dict) else {}


def server_name(path: str) -> str | None:
    """The server a reverse-proxy path addresses (``/mcp/<name>`` or ``/mcp/<name>/``); None outside ``/mcp``."""
    path = path.split("?", 1)[0]
    if path.rstrip("/") == MCP_MOUNT.rstrip("/"):
        return ""
    if not path.startswith(MCP_MOUNT):
        return None
    rest = path[len(MCP_MOUNT) :]
    return rest[:-1] if rest.endswith("/") else rest


def _check(raw: Any) -> Message:
    if not isinstance(raw, dict):
        raise JsonRpcError(INVALID_REQUEST, "Invalid Request: a JSON-RPC message must be an object.")
    request_id = raw.get("id")
    if "id" in raw and (isinstance(request_id, bool) or not isinstance(request_id, str | int | None)):
        raise JsonRpcError(INVALID_REQUEST, "Invalid Request: 'id' must be a string or an integer.")
    known_id = request_id if isinstance(request_id, str | int) else None
    if raw.get("jsonrpc") != "2.0":
        raise JsonRpcError(INVALID_REQUEST, "Invalid Request: 'jsonrpc' must be \"2.0\".", known_id)
    if "method" in raw:
        if not isinstance(raw["method"], str) or not raw["method"]:
            raise JsonRpcError(INVALID_REQUEST, "Invalid Request: 'method' must be a non-empty string.", known_id)
        if "params" in raw and not isinstance(raw["params"], dict | list):
            raise JsonRpcError(INVALID_REQUEST, "Invalid Request: 'params' must be an object.", known_id)
    elif "id" not in raw or ("result" in raw) == ("error" in raw):
        raise JsonRpcError(INVALID_REQUEST, "Invalid Request: need a 'method', or an 'id' with a result or error.")
    return Message(raw)


def read(body: bytes) -> tuple[list[Message], bool]:
    """The messages of a POST body and whether it was a batch; raises JsonRpcError for bad input."""
    try:
        parsed = jsonlimits.loads(body)
    except ValueError as e:  # UnicodeDecodeError too
        message = f"Parse error: the body is not valid JSON within Bastion's limits ({e})."
        raise JsonRpcError(PARSE_ERROR, message) from None
    if isinstance(parsed, list):
        if not parsed:
            raise JsonRpcError(INVALID_REQUEST, "Invalid Request: an empty batch.")
        return [_check(m) for m in parsed], True
    return [_check(parsed)], False


def tool_call(message: Message) -> tuple[str, Json]:
    """The tool name and arguments of a ``tools/call`` request."""
    name, arguments = message.params.get("name"), message.params.get("arguments", {})
    if not isinstance(name, str) or not name:
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: tools/call needs 'name' (a string).", message.id)
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: tools/call 'arguments' must be an object.", message.id)
    return name, arguments


def error(request_id: RequestId | None, code: int, message: str, data: Json | None = None) -> Json:
    err: Json = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": err}


def tool_error(request_id: RequestId | None, text: str, meta: Json | None = None, *, modern: bool = False) -> Json:
    """A ``tools/call`` result with ``isError``: the tool did not run, and ``text`` says why to the
    model (the MCP specification's form for tool execution errors). The 2026-07-28 revision requires
    ``resultType`` in every result."""
    result: Json = {"content": [{"type": "text", "text": text}], "isError": True}
    if modern:
        result["resultType"] = "complete"
    if meta is not None:
        result["_meta"] = meta
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def encode(message: Json) -> bytes:
    return jsonlimits.encode(message, compact=True)


def sse_event(message: Json) -> bytes:
    """One SSE event carrying a JSON-RPC message, as MCP servers send them."""
    return b"event: message\r\ndata: " + encode(message) + b"\r\n\r\n"


def is_modern(headers: Mapping[str, str]) -> bool:
    """Does the request use the 2026-07-28 (or a later) revision rather than a handshake-era one?"""
    version = headers.get(PROTOCOL_HEADER)
    return version is not None and version not in HANDSHAKE_VERSIONS


def accepts_sse(headers: Mapping[str, str]) -> bool:
    return "text/event-stream" in headers.get("accept", "").lower()


def trace_carrier(message: Message) -> dict[str, str]:
    """W3C trace context from ``params._meta``, where the MCP conventions carry it."""
    meta = message.params.get("_meta")
    if not isinstance(meta, dict):
        return {}
    return {k: meta[k] for k in TRACE_KEYS if isinstance(meta.get(k), str)}


def with_trace_context(message: Message, carrier: Mapping[str, str]) -> Json:
    """The message with ``carrier`` as its trace context in ``params._meta`` (other keys kept)."""
    params = dict(message.params)
    found = params.get("_meta")  # not an object (the spec wants one): replaced by the trace context alone
    meta = {k: v for k, v in found.items() if k not in TRACE_KEYS} if isinstance(found, dict) else {}
    params["_meta"] = {**meta, **carrier}
    return {**message.body, "params": params}


def filter_tools(message: Any, visible: Callable[[str], bool]) -> Json | None:
    """A tools/list result without the tools ``visible`` rejects; None if ``message`` is no such result."""
    if not isinstance(message, dict) or "id" not in message:
        return None
    result = message.get("result")
    if not isinstance(result, dict):
        return None
    tools = result.get("tools")
    if not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools):
        return None
    kept = [t for t in tools if visible(t["name"])]
    if len(kept) == len(tools):
        return None
    return {**message, "result": {**result, "tools": kept}}


def rewrite_event(raw: bytes, rewrite: Callable[[Any], Json | None]) -> bytes:
    """One SSE event block with its JSON data rewritten; other fields (id, event, retry) stay as they were."""
    lines = _LINE.split(raw)
    data = [line[5:].removeprefix(b" ") for line in lines if line.startswith(b"data:")]
    if not data or b'"tools"' not in raw:
        return raw
    try:
        replaced = rewrite(jsonlimits.loads(b"\n".join(data)))
    except (ValueError, UnicodeDecodeError):
        return raw
    if replaced is None:
        return raw
    newline = b"\r\n" if b"\r\n" in raw else b"\n"
    out, written = [], False
    for line in lines:
        if not line:
            continue
        if line.startswith(b"data:"):
            if not written:
                out.append(b"data: " + encode(replaced))
                written = True
            continue
        out.append(line)
    return newline.join(out) + newline + newline


def sse_rewriter(rewrite: Callable[[Any], Json | None]) -> Callable[[bytes], bytes]:
    """A stream callback that passes each whole event on as soon as it is complete, rewritten."""
    events = EventBuffer()

    def on_chunk(chunk: bytes) -> bytes:
        if not chunk:
            return events.flush()
        return b"".join(rewrite_event(raw, rewrite) for raw in events.feed(chunk))

    return on_chunk


def chain(
    first: Callable[[bytes], bytes | Iterable[bytes]], then: Callable[[bytes], bytes]
) -> Callable[[bytes], bytes]:
    """Two stream callbacks in a row; the final empty chunk flushes both."""

    def on_chunk(chunk: bytes) -> bytes:
        out = first(chunk)
        data = out if isinstance(out, bytes) else b"".join(out)
        if chunk:
            return then(data) if data else b""
        return (then(data) if data else b"") + then(b"")

    return on_chunk
