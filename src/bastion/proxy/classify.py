"""What a request is: which provider, model and operation, in policy terms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bastion import semconv
from bastion.proxy import formats
from bastion.proxy.formats import ApiFormat

# Ports an HTTP object leaves out (``http:<host><path>``), whichever the scheme; any other port is
# written (``http:<host>:<port><path>``), so a rule for one port never covers another.
WEB_PORTS = (80, 443)


def authority(host: str, port: int | None) -> str:
    """``host`` or ``host:port`` as policy objects write it: IPv6 addresses in brackets, 80 and 443 left out."""
    name = f"[{host}]" if ":" in host else host
    return name if port is None or port in WEB_PORTS else f"{name}:{port}"


@dataclass(frozen=True)
class Call:
    kind: str  # semconv.KIND_*
    provider: str
    operation: str  # gen_ai.operation.name, or "http"
    endpoint: str
    model: str | None
    stream: bool
    host: str
    path: str
    method: str
    # What an MCP message names: the tool of a tools/call.
    target: str | None = None
    # The upstream's port, written into HTTP objects unless it is 80 or 443.
    port: int | None = None

    @property
    def policy_object(self) -> str:
        if self.kind == semconv.KIND_MODEL:
            return f"model:{self.model}"
        if self.kind == semconv.KIND_MCP:
            return f"tool:{self.target}"
        return f"http:{authority(self.host, self.port)}{self.path}"

    @property
    def policy_action(self) -> str:
        if self.kind == semconv.KIND_MCP:
            return "call"
        return self.operation if self.kind == semconv.KIND_MODEL else self.method

    @property
    def span_name(self) -> str:
        if self.kind == semconv.KIND_MODEL:
            return f"{self.operation} {self.model}"
        if self.kind == semconv.KIND_MCP:
            # The MCP conventions' span name: "{mcp.method.name} {target}".
            return f"{self.endpoint} {self.target}" if self.target else self.endpoint
        return f"{self.method} {self.host}"


def mcp_call(endpoint: str, tool: str | None, host: str, path: str, method: str) -> Call:
    """An MCP message: ``endpoint`` is its JSON-RPC method (or what the HTTP request does), ``tool`` a call's tool."""
    operation = semconv.OPERATION_EXECUTE_TOOL if tool is not None else semconv.KIND_MCP
    return Call(semconv.KIND_MCP, "mcp", operation, endpoint, None, False, host, path.split("?", 1)[0], method, tool)


def classify(
    provider: str, method: str, host: str, path: str, body: Any, port: int | None = None
) -> tuple[Call, ApiFormat | None]:
    """The call, and its API format if it is a model call. ``path`` is the upstream path (with its
    query), ``body`` the parsed JSON body for model endpoints (validated earlier), ``port`` the
    upstream's. A call to a model endpoint is a model call or nothing: without its body as an object
    it raises ValueError, never passing for a plain HTTP call (other rules, no redaction)."""
    path_only = path.split("?", 1)[0]
    fmt = formats.recognise(provider, method, path_only)
    if fmt is None:
        kind, operation = semconv.KIND_HTTP, semconv.OPERATION_HTTP
        return Call(kind, provider, operation, "http", None, False, host, path_only, method, port=port), None
    if not isinstance(body, dict):
        raise ValueError(f"the body of a call to the model endpoint {path_only!r} was not read as a JSON object")
    call = Call(
        kind=semconv.KIND_MODEL,
        provider=provider,
        operation=fmt.operation,
        endpoint=fmt.name,
        model=fmt.model(body, path),
        stream=fmt.streams(body, path),
        host=host,
        path=path_only,
        method=method,
        port=port,
    )
    return call, fmt
