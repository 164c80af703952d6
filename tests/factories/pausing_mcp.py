"""A small MCP tool server (the 2026-07-28 revision's plain HTTP) whose tools/call answers as a stream:
a progress notification, then a pause until the test releases it (or ``pause`` seconds pass),
then the result. ``answered`` is set once the result is sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROGRESS = "Looking up the weather for Berlin"


@dataclass
class PausingServer:
    url: str
    release: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)


def _event(message: dict[str, Any]) -> bytes:
    data = f"event: message\ndata: {json.dumps(message)}\n\n".encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@contextmanager
def pausing_server(pause: float = 10.0) -> Iterator[PausingServer]:
    state: PausingServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            if request.get("method") != "tools/call":
                body = json.dumps({"jsonrpc": "2.0", "id": request.get("id"), "result": {}}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            progress = {"progressToken": 1, "progress": 1, "total": 2, "message": PROGRESS}
            self.wfile.write(_event({"jsonrpc": "2.0", "method": "notifications/progress", "params": progress}))
            self.wfile.flush()
            state.release.wait(pause)
            result = {"content": [{"type": "text", "text": "Sunny, 21 C"}], "isError": False}
            self.wfile.write(_event({"jsonrpc": "2.0", "id": request["id"], "result": result}))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            state.answered.set()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = PausingServer(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
