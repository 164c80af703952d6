"""An offline MCP tool server for the demo and the tests: deterministic tools, every call recorded.

One mcp 2.x ``MCPServer`` serves both protocol revisions on ``/mcp``: its session manager sends
requests whose ``MCP-Protocol-Version`` is a handshake-era version (or absent) to the session-based
transport (mcp 1.x clients: initialize, ``Mcp-Session-Id``, SSE answers, the GET stream) and the
2026-07-28 revision to the single-exchange transport (mcp 2.x clients: ``server/discover``, plain
JSON). The tools' arguments are those the bundled policy decides on.

``GET /_tool_server/calls`` lists every ``tools/call`` message that reached the server (name,
arguments, ``params._meta``, session and protocol headers), so a test can show that a denied call
never arrived; ``DELETE`` forgets them.
"""

from __future__ import annotations

import argparse
import json
import socket
import warnings
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPDeprecationWarning
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.agents.assistant_tools import build_assistant_server
from bastion.listen import bind, serve_asgi

# The demo keeps sending log notifications so that older clients see them pass through Bastion.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

MCP_PATH = "/mcp"
CALLS_PATH = "/_tool_server/calls"
FILES = {
    "/srv/public/readme.txt": "Bastion demo files. Nothing secret here.",
    "/srv/public/holidays.txt": "2026-12-25 Christmas Day\n2027-01-01 New Year's Day",
    "/etc/secrets/api-keys.txt": "sk-live-do-not-leak",
}
WEATHER = {"paris": (18, "cloudy"), "london": (14, "rain"), "tokyo": (22, "clear"), "new york": (20, "sunny")}
USERS = [
    {"id": "u1", "name": "Alice", "email": "alice@example.com"},
    {"id": "u2", "name": "Bob", "email": "bob@example.com"},
]


def build_server() -> MCPServer:
    server: MCPServer = MCPServer("bastion-demo-tools", version="1")
    sequence = iter(range(1, 1_000_000))

    @server.tool()
    async def get_weather(city: str, ctx: Context) -> str:
        """Current weather for a city."""
        await ctx.info(f"looking up the weather in {city}")
        temperature, sky = WEATHER.get(city.lower(), (10 + sum(map(ord, city.lower())) % 15, "overcast"))
        return f"{city}: {temperature} C, {sky}"

    @server.tool()
    def send_email(to: str, subject: str, body: str) -> str:
        """Send an email."""
        return f"Email {next(sequence)} sent to {to}: {subject!r} ({len(body)} characters)"

    @server.tool()
    def read_file(path: str) -> str:
        """Read a file."""
        if path not in FILES:
            raise ToolError(f"No such file: {path}")
        return FILES[path]

    @server.tool()
    def send_money(amount: float, recipient: str, currency: str = "USD") -> str:
        """Send a payment."""
        return f"Payment tx-{next(sequence)}: {amount:.2f} {currency} sent to {recipient}"

    @server.tool()
    def query_database(sql: str) -> str:
        """Run an SQL query against the users table."""
        if sql.strip().lower().startswith("select"):
            return json.dumps(USERS)
        return "1 row affected"

    @server.tool()
    def delete_user(user_id: str) -> str:
        """Delete a user."""
        return f"User {user_id} deleted"

    return server


class CallRecorder:
    """ASGI middleware that notes every ``tools/call`` message POSTed to the MCP endpoint."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != MCP_PATH:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        self._record(scope, body)

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    def _record(self, scope: Scope, body: bytes) -> None:
        try:
            parsed = json.loads(body)
        except ValueError:
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        for message in parsed if isinstance(parsed, list) else [parsed]:
            if isinstance(message, dict) and message.get("method") == "tools/call":
                params = message.get("params") or {}
                self.calls.append(
                    {
                        "id": message.get("id"),
                        "name": params.get("name"),
                        "arguments": params.get("arguments"),
                        "meta": params.get("_meta"),
                        "session_id": headers.get("mcp-session-id"),
                        "protocol_version": headers.get("mcp-protocol-version"),
                        "traceparent": headers.get("traceparent"),
                    }
                )


SUITES = ("demo", "assistant")


def build_app(host: str = "127.0.0.1", suite: str = "demo") -> CallRecorder:
    """The server of ``suite``: ``demo`` (the bundled policy's tools) or ``assistant`` (assistant_tools.py)."""
    server = build_server() if suite == "demo" else build_assistant_server()
    recorder: CallRecorder

    async def calls(request: Request) -> Response:
        if request.method == "DELETE":
            recorder.calls.clear()
        return JSONResponse(recorder.calls)

    server.custom_route(CALLS_PATH, methods=["GET", "DELETE"])(calls)

    # The SDK turns on DNS-rebinding protection (421 for a foreign Host) for loopback hosts.
    recorder = CallRecorder(server.streamable_http_app(streamable_http_path=MCP_PATH, host=host))
    return recorder


def serve(sock: socket.socket, host: str, log_level: str = "warning", suite: str = "demo") -> None:
    print(f"Bastion {suite} tool server: http://{host}:{sock.getsockname()[1]}{MCP_PATH}", flush=True)
    serve_asgi(build_app(host, suite), sock, log_level)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    args = parser.parse_args()
    serve(bind("tool-server", args.host, args.port), args.host)


if __name__ == "__main__":
    main()
