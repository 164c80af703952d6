"""Edit a JSON object's top-level members in place, leaving every other byte as it was."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class Member:
    key: str
    start: int  # where the key's opening quote is
    value_start: int
    end: int  # just after the value


def _skip(text: str, at: int) -> int:
    match = _SPACE.match(text, at)
    return match.end() if match else at


def members(text: str) -> list[Member]:
    """The top-level members of the JSON object ``text``, in order. Raises ValueError if it is not one."""
    at = _skip(text, 0)
    if text[at : at + 1] != "{":
        raise ValueError("not a JSON object")
    found: list[Member] = []
    at = _skip(text, at + 1)
    if text[at : at + 1] == "}":
        return found
    while True:
        start = at
        key, at = _DECODER.raw_decode(text, at)
        at = _skip(text, at)
        if not isinstance(key, str) or text[at : at + 1] != ":":
            raise ValueError(f"expected a key and ':' at {start}")
        value_start = _skip(text, at + 1)
        _, end = _DECODER.raw_decode(text, value_start)
        found.append(Member(key, start, value_start, end))
        at = _skip(text, end)
        if text[at : at + 1] == "}":
            return found
        if text[at : at + 1] != ",":
            raise ValueError(f"expected ',' or '}}' at {at}")
        at = _skip(text, at + 1)


def edit(text: str, changes: dict[str, str | None]) -> str:
    """Replace the values of the named members with the given JSON texts, or remove them (None).

    Every occurrence of a named key changes (JSON parsers disagree on which duplicate wins).
    """
    spans = [m for m in members(text) if m.key in changes]
    for m in reversed(spans):
        new = changes[m.key]
        if new is not None:
            text = text[: m.value_start] + new + text[m.end :]
            continue
        # Remove the member with the comma that follows it, or else the one before it.
        after = _skip(text, m.end)
        if text[after : after + 1] == ",":
            text = text[: m.start] + text[_skip(text, after + 1) :]
        else:
            text = text[: _comma_before(text, m.start)] + text[m.end :]
    return text


def _comma_before(text: str, at: int) -> int:
    """The index of the comma before position ``at`` (the member is last), or ``at`` if it is the only one."""
    i = at - 1
    while i >= 0 and text[i] in " \t\n\r":
        i -= 1
    return i if i >= 0 and text[i] == "," else at


def array_items(text: str, member: Member) -> list[str]:
    """The raw text of each item of the member's value, a JSON array. Raises ValueError otherwise."""
    if text[member.value_start] != "[":
        raise ValueError(f"{member.key} is not an array")
    items: list[str] = []
    at = _skip(text, member.value_start + 1)
    while text[at] != "]":
        _, end = _DECODER.raw_decode(text, at)
        items.append(text[at:end])
        at = _skip(text, end)
        if text[at] == ",":
            at = _skip(text, at + 1)
    return items
