"""Server-sent events, cut into whole events as bytes arrive in arbitrary chunks."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mitmproxy import http

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


@dataclass(frozen=True)
class Event:
    event: str
    data: str


def parse_event(raw: bytes) -> Event:
    """Parse one event block (fields per the HTML living standard's event-stream format)."""
    name, data = "message", []
    for line in raw.decode("utf-8", "replace").splitlines():
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    return Event(name, "\n".join(data))


class EventBuffer:
    """Accumulates chunks and hands back each complete event block, separator included."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self._pending += chunk
        events = []
        while match := _EVENT_END.search(self._pending):
            events.append(self._pending[: match.end()])
            self._pending = self._pending[match.end() :]
        return events

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest


def is_event_stream(response: http.Response) -> bool:
    """The response is a server-sent event stream (by its content type)."""
    content_type: str = response.headers.get("content-type", "")
    return content_type.split(";", 1)[0].strip() == "text/event-stream"
