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
from collections.abc import Callable, Hashable
from typing import Any

from spacy.lang.en.stop_words import STOP_WORDS

from bastion.proxy import jsonlimits
from bastion.proxy.formats import ApiFormat
from bastion.proxy.pii.bodies import walk
from bastion.proxy.pii.redactor import MAX_PLACEHOLDER
from bastion.proxy.sse import EventBuffer, parse_event

log = logging.getLogger(__name__)
MAX_HOLD = 4096  # characters without whitespace held at most (a long token, a key)
WORD = re.compile(r"\S+")
# Could be part of a structured value or a secret: a digit, @ or +, a PEM armour line, a long token.
VALUE_PART = re.compile(r"[\d@+]|^-----|^[A-Za-z0-9_/+=.-]{16,}$")
SHORT_WORD = 5  # letters: "de", "van", "years", "old" inside a value's run

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


class StreamRedactor:
    """One response stream: whole events in, events with their texts rewritten out. Where an
    event's texts are is its format's (``ApiFormat.redact_event``); this holds their channels."""

    def __init__(
        self,
        fmt: ApiFormat,
        process: Process,
        spans: Spans | None,
        window: int,
        error: bytes = b"",
        names: bool = False,
    ) -> None:
        self.format, self.process, self.spans, self.window, self.names = fmt, process, spans, window, names
        self.channels: dict[Hashable, HoldBack] = {}
        self.events = EventBuffer()
        self.error = error  # the event that ends a blocked stream
        self.closed = False

    # The channels, as formats see them (formats.base.Channels).

    def feed(self, key: Hashable, delta: str, json_string: bool) -> str:
        found = self.channels.get(key)
        if found is None:
            found = self.channels[key] = HoldBack(self.process, self.spans, self.window, json_string, self.names)
        return found.feed(delta)

    def flush(self, key: Hashable) -> str:
        channel = self.channels.pop(key, None)
        return channel.flush() if channel is not None else ""

    def open(self) -> list[Hashable]:
        return list(self.channels)

    def whole(self, value: Any) -> Any:
        return walk(value, lambda text: self.process(text, False), extra=self.format.free_keys)

    def text(self, text: str, json_string: bool) -> str:
        return self.process(text, json_string)

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
        if not isinstance(data, dict) or self.format.redact_event is None:
            return self.format.redact_other(self, raw)
        return self.format.redact_event(self, data, parsed.event)
