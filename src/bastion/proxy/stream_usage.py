"""Usage for streamed OpenAI chat completions, which report none unless the request asks.

A streamed chat completion without ``stream_options.include_usage`` ends with no token counts, so a
budget could not count it. With budgets configured, the proxy asks for usage itself and, when the
agent had not asked, removes the extra final chunk (``choices: []`` with ``usage``) from the stream
it hands back, after reading it: the agent sees the stream it asked for.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from bastion.proxy import jsonlimits
from bastion.proxy.sse import EventBuffer, parse_event


def ask_for_usage(body: Any) -> dict[str, Any] | None:
    """The request body asking for usage, or None when it already does (or is not a streamed request)."""
    if not isinstance(body, dict) or body.get("stream") is not True:
        return None
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return None
    return {**body, "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True}}


def _usage_only(raw: bytes) -> bool:
    data = parse_event(raw).data
    if not data.startswith("{"):
        return False
    try:
        chunk = jsonlimits.loads(data)
    except ValueError:
        return False
    return isinstance(chunk, dict) and chunk.get("choices") == [] and isinstance(chunk.get("usage"), dict)


def without_usage_chunk(inner: Callable[[bytes], bytes | Iterable[bytes]]) -> Callable[[bytes], list[bytes]]:
    """A stream callback passing on what ``inner`` returns, in whole events, less the usage-only chunk.
    It returns a list, empty while it holds a partial event (an empty ``bytes`` would end a chunked
    response, see ``toolcalls.stream_callback``)."""
    events = EventBuffer()

    def on_chunk(chunk: bytes) -> list[bytes]:
        out = inner(chunk)
        data = out if isinstance(out, bytes) else b"".join(out)
        whole = events.feed(data) if data else []
        if not chunk:  # the end: whatever is left is passed on as it is
            whole.append(events.flush())
        kept = b"".join(e for e in whole if not _usage_only(e))
        return [kept] if kept else []

    return on_chunk


def body_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()
