"""Sending a streamed response's data to the client between upstream chunks.

mitmproxy calls ``flow.response.stream`` only when upstream sends a chunk, and sends on what it
returns. Work finished later (a chunk analyzed on a thread) would wait for upstream's next chunk,
which may come seconds later or never. ``nudge`` makes mitmproxy call the stream callback once more
at once, with :data:`NUDGE` as the chunk: the callback answers with what is ready.

The nudge is a synthetic event addressed to the flow's stream (mitmproxy routes injected messages by
flow, as it does for WebSocket injection). It is sent only while that stream is still streaming an
HTTP/1 response (mitmproxy routes injected events to HTTP/1 streams only); otherwise nothing
happens, and what is ready goes out with the next chunk as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from mitmproxy import ctx, http
from mitmproxy.proxy.events import MessageInjected
from mitmproxy.proxy.layers.http._events import ResponseData

log = logging.getLogger(__name__)


class _Nudge(bytes):
    """The chunk of a nudge: a distinct object, told apart by identity (``chunk is NUDGE``). It is
    not empty, so callbacks that wrap others pass it on (``b""`` means the end of the stream) to the
    callback that knows it; that one answers with data, never with the nudge itself."""


NUDGE = _Nudge(b"\0")


class _NudgeEvent(MessageInjected[None], ResponseData):
    """Routed to the flow's stream like an injected message; read by the stream as response data."""

    def __init__(self, flow: http.HTTPFlow) -> None:
        self.flow, self.message = flow, None
        self.stream_id, self.data = 0, NUDGE


def pusher(flow: http.HTTPFlow, streaming: Callable[[], bool]) -> Callable[[], None] | None:
    """A thread-safe function that nudges ``flow``'s stream while ``streaming()`` is true, or None
    when this flow cannot be nudged (HTTP/2, no running proxy server)."""
    response = flow.response
    if response is None or not response.http_version.startswith("HTTP/1"):
        return None
    try:
        loop = asyncio.get_running_loop()
        server = ctx.master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
    except (RuntimeError, AttributeError):
        return None
    connections = getattr(server, "connections", None)
    if not isinstance(connections, dict):
        return None

    async def push() -> None:
        handler = connections.get(flow.client_conn.id)
        # No await between this check and the event: server_event takes its lock without waiting
        # (nobody holds it across an await), so the stream cannot end in between.
        if handler is None or not flow.live or flow.error or not streaming():
            return
        await handler.server_event(_NudgeEvent(flow))

    def nudge() -> None:
        loop.call_soon_threadsafe(lambda: loop.create_task(push()))

    return nudge
