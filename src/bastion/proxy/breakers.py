"""Runaway agents and failing upstreams, as plain state in memory.

- ``Steps`` counts model and tool calls per conversation (the step budget) and identical tool
  calls (the repetition detector);
- ``Streaks`` counts upstream errors in a row, per agent (then the agent cools down) or per
  upstream (then its circuit opens: calls fail fast until the cool-down ends, and the first
  failure after it opens the circuit again).

The tool calls a model asked for in a request's history come from its API format's
``conversation`` (``proxy/formats/``), so a model asking for the same call again and again is seen
in the conversation itself, in every API.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

from bastion.proxy.ratelimit import Clock

Json = dict[str, Any]


def conversation_key(agent: str, header: str | None, first_user_text: str) -> str:
    """A conversation: the agent and its ``x-bastion-conversation`` header (or MCP session), else
    the first user message of the history the agent sends with every call."""
    basis = f"header:{header}" if header else f"first:{first_user_text}"
    # surrogatepass: a lone surrogate an agent sent still names its conversation, never a crash
    return hashlib.sha256(f"{agent}\0{basis}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


def call_key(name: str, arguments: Any) -> str:
    """One tool call's identity: its name and canonical arguments (JSON text is parsed first)."""
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):
            arguments = json.loads(arguments)
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return f"{name}\0{canonical}"


def most_repeated(calls: list[str]) -> tuple[str, int]:
    """The call repeated most often (its name) and how many times; ("", 0) for none."""
    if not calls:
        return "", 0
    key, count = Counter(calls).most_common(1)[0]
    return key.split("\0", 1)[0], count


@dataclass
class _Conversation:
    steps: int = 0
    calls: Counter[str] | None = None


class Steps:
    """Steps and tool calls per conversation, the least recently used dropped beyond ``size``."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, _Conversation] = OrderedDict()

    def _get(self, conversation: str) -> _Conversation:
        found = self._seen.get(conversation)
        if found is None:
            found = self._seen[conversation] = _Conversation()
        self._seen.move_to_end(conversation)
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return found

    def reset(self, conversation: str) -> None:
        self._seen.pop(conversation, None)

    def step(self, conversation: str) -> int:
        """Count one more step; returns the conversation's steps so far, this one included."""
        found = self._get(conversation)
        found.steps += 1
        return found.steps

    def repeat(self, conversation: str, call: str) -> int:
        """Count one more of ``call``; returns how many times the conversation has made it."""
        found = self._get(conversation)
        if found.calls is None:
            found.calls = Counter()
        found.calls[call] += 1
        return found.calls[call]


@dataclass
class _Streak:
    errors: int = 0
    open_until: float = 0.0


class Streaks:
    """Errors in a row per key (an agent, an upstream); ``threshold`` in a row opens it for ``cooldown``."""

    def __init__(self, size: int = 100_000, clock: Clock = time.monotonic) -> None:
        self.size = size
        self.clock = clock
        self._streaks: OrderedDict[str, _Streak] = OrderedDict()

    def open_for(self, key: str) -> float:
        """Seconds until ``key`` may be called again (0.0: closed)."""
        found = self._streaks.get(key)
        return 0.0 if found is None else max(0.0, found.open_until - self.clock())

    def record(self, key: str, failed: bool, threshold: int | None, cooldown: float) -> bool:
        """Record a result; True when this failure opened the key."""
        if not failed:
            self._streaks.pop(key, None)
            return False
        found = self._streaks.get(key)
        if found is None:
            found = self._streaks[key] = _Streak()
        self._streaks.move_to_end(key)
        if len(self._streaks) > self.size:
            self._streaks.popitem(last=False)
        found.errors += 1
        if threshold is None or found.errors < threshold:
            return False
        found.errors = threshold - 1  # after the cool-down, one more failure opens it again
        found.open_until = self.clock() + cooldown
        return True
