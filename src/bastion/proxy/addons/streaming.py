"""Responses: SSE streams pass through as they arrive, read on the side for usage."""

from __future__ import annotations

import logging
from collections.abc import Callable

from mitmproxy import http

from bastion.proxy.sse import EventBuffer, is_event_stream, parse_event
from bastion.proxy.state import state
from bastion.proxy.usage import Usage

log = logging.getLogger(__name__)


def usage_tee(usage: Usage) -> Callable[[bytes], bytes]:
    """A stream callback that passes every chunk on unchanged and reads whole events for usage."""
    events = EventBuffer()

    def on_chunk(chunk: bytes) -> bytes:
        try:
            for raw in events.feed(chunk) if chunk else [events.flush()]:
                usage.update_from_event_data(parse_event(raw).data)
        except Exception:
            log.exception("could not read a streamed event")
        return chunk

    return on_chunk


class ResponseStream:
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and is_event_stream(flow.response):
            flow.response.stream = usage_tee(state(flow).usage)

    def response(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or response.stream or not response.raw_content:
            return
        if "json" in response.headers.get("content-type", ""):
            try:
                state(flow).usage.update(response.json())
            except (ValueError, UnicodeDecodeError):
                return
