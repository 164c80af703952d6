"""Responses: SSE streams pass through as they arrive, read on the side for usage (where the call's
format keeps it; any other call's answer is read as OpenAI's and Anthropic's are)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mitmproxy import http

from bastion.proxy import jsonlimits
from bastion.proxy.sse import EventBuffer, is_event_stream, parse_event
from bastion.proxy.state import CallState, state
from bastion.proxy.usage import Usage

log = logging.getLogger(__name__)


def usage_tee(usage: Usage, read: Callable[[Usage, Any], None] = Usage.update) -> Callable[[bytes], bytes]:
    """A stream callback that passes every chunk on unchanged and reads whole events for usage."""
    events = EventBuffer()

    def on_chunk(chunk: bytes) -> bytes:
        try:
            for raw in events.feed(chunk) if chunk else [events.flush()]:
                data = parse_event(raw).data
                if data and data != "[DONE]":
                    try:
                        read(usage, jsonlimits.loads(data))
                    except ValueError:
                        continue
        except Exception:
            log.exception("could not read a streamed event")
        return chunk

    return on_chunk


class ResponseStream:
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and is_event_stream(flow.response):
            st = state(flow)
            flow.response.stream = usage_tee(st.usage, _reader(st))

    def response(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or response.stream or not response.raw_content:
            return
        if "json" in response.headers.get("content-type", ""):
            st = state(flow)
            try:
                _reader(st)(st.usage, response.json())
            except (ValueError, UnicodeDecodeError):
                return


def _reader(st: CallState) -> Callable[[Usage, Any], None]:
    return st.format.read_usage if st.format is not None else Usage.update
