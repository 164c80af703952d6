"""What an API format is: the value each module in this package defines, and what they share.

A format answers every question the addons ask about a model API's calls: whether a request is
one of its calls (provider, method, upstream path), the model and whether it streams, where its
texts, tool calls and tool results are (request and response, JSON and streamed), the tools a
request offers, the usage fields, the SSE events that rewrite a stream, the error body and error
event for a refusal, and what names a conversation. Nothing here runs a proxy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from bastion.proxy import jsonlimits
from bastion.proxy.provenance import Conversation
from bastion.proxy.toolcalls import FilteredRequest, Judge, StreamRewriter, ToolList, Verdict, filter_tools
from bastion.proxy.usage import Usage

Json = dict[str, Any]
GUIDANCE_PREFIX = "Guidance from a human supervisor (via Bastion): "
MAX_CHARS = 2000  # of one message shown to an approver


class Channels(Protocol):
    """A stream's text channels (``pii/streams.py``): each delta goes through its channel's
    hold-back buffer, redacted and restored; what a channel holds comes out when it is flushed."""

    def feed(self, key: Hashable, delta: str, json_string: bool) -> str: ...

    def flush(self, key: Hashable) -> str: ...

    def open(self) -> list[Hashable]:
        """The keys of the channels holding text."""
        ...

    def whole(self, value: Any) -> Any:
        """``value`` with every text in it processed at once (a block that arrives whole)."""
        ...

    def text(self, text: str, json_string: bool) -> str:
        """One text processed at once."""
        ...


# (channels, an event's JSON data, the event's name) -> the events to send
RedactEvent = Callable[[Channels, Json, str], list[bytes]]


@dataclass(frozen=True)
class ApiFormat:
    name: str  # the endpoint as spans and Call.endpoint name it ("chat.completions")
    provider: str  # the routes' provider in bastion.yaml
    provider_name: str  # gen_ai.provider.name (semconv.PROVIDER_*)
    operation: str  # gen_ai.operation.name
    # (method, upstream path without query) -> whether it is a call of this format
    recognises: Callable[[str, str], bool]
    # (status, message, code) -> the JSON error body its SDKs read
    error_body: Callable[[int, str, str], Json]
    # (message, code) -> the SSE event that ends a stream with an error
    error_event: Callable[[str, str], bytes]
    # (parsed body, upstream path with query) -> the model called / whether the answer streams
    model: Callable[[Json, str], str | None] = lambda body, path: body_model(body)
    streams: Callable[[Json, str], bool] = lambda body, path: bool(body.get("stream"))
    # Folds a JSON answer, or one streamed event's data, into the call's usage.
    read_usage: Callable[[Usage, Any], None] = Usage.update
    # Tool calls: the requests' tool lists (or a filter of their own, for tools nested deeper),
    # deciding a JSON answer's calls, rewriting a stream.
    tool_lists: tuple[ToolList, ...] = ()
    filter_tools: Callable[[str, Json, Callable[[str], bool]], FilteredRequest] | None = None
    govern: Callable[[Json, Judge], list[Verdict]] | None = None
    # The answers a JSON body holds: itself, or (Gemini's stream without ?alt=sse) each in an array.
    answers: Callable[[Any], list[Json]] = lambda body: [body] if isinstance(body, dict) else []
    rewriter: Callable[[Judge, bool], StreamRewriter] | None = None
    # Personal data in streams: an event with JSON data, and an event without (``[DONE]``).
    redact_event: RedactEvent | None = None
    redact_other: Callable[[Channels, bytes], list[bytes]] = lambda channels, raw: [raw]
    # Keys whose object values are free-form data (every string inside is a text), beyond the
    # common ones in pii/bodies.py.
    free_keys: frozenset[str] = frozenset()
    # The conversation: its last messages (for an approver), a human's guidance added, the first
    # user text (with the agent, it names a conversation), the response a request continues.
    messages: Callable[[Json], list[Json]] = lambda body: []
    with_guidance: Callable[[Json, str], Json | None] | None = None  # None: the API takes no instructions
    first_user_text: Callable[[Json], str] = lambda body: ""
    # Its texts with their sources and its earlier tool calls (provenance, session facts, the
    # runaway breakers' history).
    conversation: Callable[[Any], Conversation] = lambda body: Conversation()
    continues: Callable[[Json], str | None] = lambda body: None
    # The header that carries the provider's key upstream, and its value.
    provider_key: Callable[[str], tuple[str, str]] = lambda key: ("authorization", f"Bearer {key}")

    def offered_tools(self, text: str, body: Json, visible: Callable[[str], bool]) -> FilteredRequest:
        """The request ``text`` (parsed: ``body``) without the tools the agent may not call."""
        if self.filter_tools is not None:
            return self.filter_tools(text, body, visible)
        return filter_tools(text, body, self.tool_lists, visible)

    def last_messages(self, body: Any, count: int) -> list[Json]:
        """The last ``count`` messages of a request, each ``{"role", "content"}``, long texts cut."""
        if not isinstance(body, dict) or count <= 0:
            return []
        found = self.messages(body)[-count:]
        return [{"role": m.get("role", m.get("type", "")), "content": _short(m.get("content", m))} for m in found]


def body_model(body: Json) -> str | None:
    """The ``model`` member, when it is a string (Validate refuses a model call without one)."""
    model = body.get("model")
    return model if isinstance(model, str) and model else None


def _short(content: Any) -> Any:
    if isinstance(content, str) and len(content) > MAX_CHARS:
        return content[:MAX_CHARS] + "…"
    return content


def ends_with(suffix: str) -> Callable[[str, str], bool]:
    """Recognises a POST to an upstream path ending with ``/<suffix>``."""

    def recognises(method: str, path: str) -> bool:
        return method == "POST" and path.rstrip("/").endswith("/" + suffix)

    return recognises


def data_event(data: Json, name: str | None = None) -> bytes:
    """An SSE event with JSON data; ``event: <name>`` unless it is the default ``message``."""
    head = f"event: {name}\n" if name and name != "message" else ""
    return jsonlimits.to_utf8(f"{head}data: {jsonlimits.dumps(data, compact=True)}\n\n")


def json_event(data: Json, name: str | None = None) -> bytes:
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()
