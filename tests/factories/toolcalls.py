"""Factories for tool-call tests: a judge over the bundled policy, and SSE fed in awkward chunks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bastion.proxy.policy import PolicyEngine
from bastion.proxy.sse import EventBuffer, parse_event
from bastion.proxy.toolcalls import Judge, StreamRewriter, Verdict, sse_event, stream_callback
from factories.proxy import policies_dir

# Bytes per chunk the upstream's stream is cut into; None: the whole stream at once.
CHUNK_SIZES = (1, 7, None)
Event = tuple[str, Any]  # (event name, JSON data or the raw data text)

ALLOWED_WEATHER = ("get_weather", {"city": "Paris"})
DENIED_EMAIL = ("send_email", {"to": "x@evil.com", "body": "secrets"})
ALLOWED_EMAIL = ("send_email", {"to": "bob@example.com", "body": "hi"})
REVIEW_MONEY = ("send_money", {"amount": 500, "recipient": "alice@example.com"})
DENIED_DELETE = ("delete_user", {"id": 7})


_engines: dict[Path, PolicyEngine] = {}


def engine(tmp_path: Path) -> PolicyEngine:
    """The bundled policy, copied into ``tmp_path`` once per test."""
    if tmp_path not in _engines:
        _engines[tmp_path] = PolicyEngine(policies_dir(tmp_path))
    return _engines[tmp_path]


def judge(tmp_path: Path, recorded: list[Verdict] | None = None) -> Judge:
    return Judge(engine(tmp_path).decide, "agent-1", "assistant", recorded.append if recorded is not None else None)


def sse(*events: Any, named: bool = False) -> bytes:
    """JSON events (or raw data strings) as an SSE stream; ``named`` adds ``event: <type>``."""
    return b"".join(sse_event(e, e.get("type") if named and isinstance(e, dict) else None) for e in events)


def run(
    rewriter: StreamRewriter, stream: bytes, size: int | None, inner: Callable[[bytes], bytes] | None = None
) -> bytes:
    """Feed ``stream`` through the rewriter in chunks of ``size`` bytes, then the final b""."""
    callback = stream_callback(rewriter, inner)
    step = size or max(len(stream), 1)
    chunks = [c for i in range(0, len(stream), step) for c in callback(stream[i : i + step])] + callback(b"")
    assert all(chunks), "an empty chunk would end a chunked response"
    return b"".join(chunks)


def events(stream: bytes) -> list[Event]:
    buffer = EventBuffer()
    found = []
    for raw in [*buffer.feed(stream), buffer.flush()]:
        event = parse_event(raw)
        if not event.data:  # a comment: clients dispatch nothing
            continue
        try:
            data = json.loads(event.data)
        except ValueError:
            data = event.data
        found.append((event.event, data))
    return found
