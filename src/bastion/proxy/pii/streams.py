"""Redaction and restoration on SSE streams, with a hold-back buffer per text channel.

Text arrives in deltas (a choice's content, a call's argument fragments, a content block's text).
Each channel keeps back only what could start or continue a match (:func:`held_from`): the last,
unfinished word, and before it the run of words that could belong to a value (a digit, ``@``, ``+``,
a key's shape; with names configured, a capital; a short word between two such words, as in
"Christiane de Vaan" or "42 years old"); plus any detected entity that reaches into that tail, and
an unfinished ``<...`` that may be a placeholder. Everything before it is redacted, restored and
sent at once, so ordinary prose is not delayed; what is held goes out when the channel ends. Every
event stays a valid event of its API: a delta that is held becomes an empty delta.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from spacy.lang.en.stop_words import STOP_WORDS

from bastion.proxy import jsonlimits
from bastion.proxy.pii.bodies import walk
from bastion.proxy.pii.redactor import MAX_PLACEHOLDER
from bastion.proxy.sse import EventBuffer, parse_event

log = logging.getLogger(__name__)
MAX_HOLD = 4096  # characters without whitespace held at most (a long token, a key)
WORD = re.compile(r"\S+")
# Could be part of a structured value or a secret: a digit, @ or +, a PEM armour line, a long token.
VALUE_PART = re.compile(r"[\d@+]|^-----|^[A-Za-z0-9_/+=.-]{16,}$")
SHORT_WORD = 5  # letters: "de", "van", "years", "old" inside a value's run

Json = dict[str, Any]
# (text, json_string) -> the text to send
Process = Callable[[str, bool], str]
Spans = Callable[[str], list[tuple[int, int]]]


class Blocked(Exception):
    """``process`` found a type configured to block: the stream ends with an error event."""


def _could_be_part(word: str, names: bool) -> bool:
    if VALUE_PART.search(word) is not None:
        return True
    # A capitalised word may be a name, unless it is a stop word ("Please", "The", "I"): as ner.py
    # assumes, those are not the names the model finds.
    return names and word[:1].isupper() and word.strip(".,;:!?()'\"").lower() not in STOP_WORDS


def held_from(text: str, names: bool) -> int:
    """Where the tail of ``text`` that could still start or continue a match begins (``len(text)``
    when nothing could): the unfinished last word, and the words before it that could be part of
    a value, with short plain words between two of them."""
    words = list(WORD.finditer(text))
    start = len(text)
    i = len(words) - 1
    if words and words[-1].end() == len(text):  # the last word may go on in the next delta
        start = words[-1].start()
        i -= 1
    while i >= 0:
        word = words[i].group()
        inside = start < len(text) and i > 0 and _could_be_part(words[i - 1].group(), names)
        if _could_be_part(word, names) or (inside and word.isalpha() and len(word) <= SHORT_WORD):
            start = words[i].start()
            i -= 1
            continue
        break
    return start


class HoldBack:
    """One text channel of a stream. ``window`` (0: no analysis, only placeholders are held) is the
    most characters of words held back; ``names`` holds capitalised words too."""

    def __init__(
        self, process: Process, spans: Spans | None, window: int, json_string: bool = False, names: bool = False
    ) -> None:
        self.process, self.spans, self.window, self.json_string = process, spans, window, json_string
        self.names = names
        self.pending = ""

    def feed(self, delta: str) -> str:
        self.pending += delta
        cut = self._cut()
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return self.process(out, self.json_string) if out else ""

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return self.process(out, self.json_string) if out else ""

    def _cut(self) -> int:
        text = self.pending
        cut = len(text)
        if self.spans is not None and self.window:
            cut = held_from(text, self.names)
            if cut < len(text) - self.window:  # a long run: hold only its last words
                space = max(text.rfind(c, 0, len(text) - self.window + 1) for c in " \n\t")
                if space > 0:
                    cut = space
                elif len(text) < MAX_HOLD:
                    return 0  # one long token so far: wait for its end
            if 0 < cut < len(text):  # (nothing held: no entity can reach into the tail)
                for start, end in self.spans(text):
                    if start < cut < end:
                        cut = start
        opening = text.rfind("<", 0, cut)
        if opening != -1 and ">" not in text[opening:cut] and cut - opening <= MAX_PLACEHOLDER:
            cut = opening
        return max(cut, 0)


def _event(data: Json, name: str | None) -> bytes:
    head = f"event: {name}\n" if name and name != "message" else ""
    return jsonlimits.to_utf8(f"{head}data: {jsonlimits.dumps(data, compact=True)}\n\n")


class StreamRedactor:
    """One response stream: whole events in, events with their texts rewritten out."""

    def __init__(
        self, endpoint: str, process: Process, spans: Spans | None, window: int, error: bytes = b"", names: bool = False
    ) -> None:
        self.endpoint, self.process, self.spans, self.window, self.names = endpoint, process, spans, window, names
        self.channels: dict[Any, HoldBack] = {}
        self.events = EventBuffer()
        self.error = error  # the event that ends a blocked stream
        self.closed = False

    def _channel(self, key: Any, json_string: bool) -> HoldBack:
        found = self.channels.get(key)
        if found is None:
            found = self.channels[key] = HoldBack(self.process, self.spans, self.window, json_string, self.names)
        return found

    def _flush(self, key: Any) -> str:
        channel = self.channels.pop(key, None)
        return channel.flush() if channel is not None else ""

    def __call__(self, chunk: bytes) -> list[bytes]:
        blocks = self.events.feed(chunk) if chunk else [self.events.flush()]
        out: list[bytes] = []
        for raw in blocks:
            if self.closed:
                break
            if not raw.strip():
                out.append(raw)
                continue
            try:
                out += self.event(raw)
            except Blocked:
                self.closed = True
                out.append(self.error)
            except Exception:
                log.exception("could not redact a streamed event; it is dropped")
        return [b"".join(out)] if any(out) else []

    def event(self, raw: bytes) -> list[bytes]:
        parsed = parse_event(raw)
        try:
            data = jsonlimits.loads(parsed.data) if parsed.data else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return [*self._flush_all_openai(), raw] if self.endpoint == "chat.completions" else [raw]
        if self.endpoint == "chat.completions":
            return [_event(self._chat(data), parsed.event)]
        if self.endpoint == "messages":
            return self._anthropic(data, parsed.event)
        return self._responses(data, parsed.event)

    # OpenAI chat completions

    def _chat(self, data: Json) -> Json:
        for choice in data.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            number = choice.get("index", 0)
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            if isinstance(delta.get("content"), str):
                delta["content"] = self._channel(("content", number), False).feed(delta["content"])
            for call in delta.get("tool_calls") or []:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    key = ("args", number, call.get("index", 0))
                    function["arguments"] = self._channel(key, True).feed(function["arguments"])
            if choice.get("finish_reason"):
                rest = self._flush(("content", number))
                if rest:
                    delta["content"] = (delta.get("content") or "") + rest
                for key in [k for k in self.channels if k[0] == "args" and k[1] == number]:
                    if rest := self._flush(key):
                        delta.setdefault("tool_calls", []).append({"index": key[2], "function": {"arguments": rest}})
        return data

    def _flush_all_openai(self) -> list[bytes]:
        """The stream ends without a finish_reason: what is held goes out in one last chunk."""
        deltas = {}
        for key in list(self.channels):
            rest = self._flush(key)
            if rest and key[0] == "content":
                deltas[key[1]] = {"content": rest}
        choices = [{"index": n, "delta": d, "finish_reason": None} for n, d in deltas.items()]
        return [_event({"object": "chat.completion.chunk", "choices": choices}, None)] if choices else []

    # Anthropic messages

    def _anthropic(self, data: Json, name: str) -> list[bytes]:
        kind, index = data.get("type"), data.get("index")
        delta = data.get("delta")
        if kind == "content_block_delta" and isinstance(delta, dict):
            for field, json_string in (("text", False), ("partial_json", True)):
                if isinstance(delta.get(field), str):
                    delta[field] = self._channel((index, field), json_string).feed(delta[field])
            return [_event(data, name)]
        if kind == "content_block_stop":
            out = []
            for field, delta_type in (("text", "text_delta"), ("partial_json", "input_json_delta")):
                if rest := self._flush((index, field)):
                    tail = {"type": "content_block_delta", "index": index, "delta": {"type": delta_type, field: rest}}
                    out.append(_event(tail, "content_block_delta"))
            return [*out, _event(data, name)]
        if kind in ("content_block_start", "message_start"):
            return [_event(walk(data, self._whole), name)]
        return [_event(data, name)]

    def _whole(self, text: str) -> str:
        return self.process(text, False)

    # OpenAI Responses

    def _responses(self, data: Json, name: str) -> list[bytes]:
        kind = str(data.get("type") or "")
        if kind in ("response.output_text.delta", "response.function_call_arguments.delta"):
            json_string = kind.startswith("response.function_call")
            key = (data.get("output_index"), data.get("content_index"), json_string)
            if isinstance(data.get("delta"), str):
                data["delta"] = self._channel(key, json_string).feed(data["delta"])
            return [_event(data, name)]
        out = []
        if kind in ("response.output_text.done", "response.function_call_arguments.done"):
            json_string = kind.startswith("response.function_call")
            key = (data.get("output_index"), data.get("content_index"), json_string)
            if rest := self._flush(key):
                delta_kind = kind.removesuffix(".done") + ".delta"
                tail = {k: v for k, v in data.items() if k not in ("text", "arguments", "type")}
                out.append(_event({"type": delta_kind, **tail, "delta": rest}, delta_kind))
        fields = {k: v for k, v in data.items() if k not in ("type", "delta")}
        rewritten = walk(fields, self._whole)
        if isinstance(data.get("arguments"), str):
            rewritten["arguments"] = self.process(data["arguments"], True)
        return [*out, _event({"type": kind, **rewritten}, name)]
