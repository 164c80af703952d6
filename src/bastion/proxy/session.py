"""Session facts: the tool calls made earlier in the same conversation or MCP session.

Conditions ask ``session_count("tool:send_email") < 5`` and
``session_called("tool:invite_user", r.args.user)``; patterns match objects as rules do
(``tool:send_email`` matches every server's).

Where the facts come from:

- a tool call a model emits: the conversation itself. Every model request carries the whole
  conversation, so its earlier tool calls are read from it (:mod:`bastion.proxy.provenance`), plus
  the calls allowed earlier in the same response. Nothing is kept between calls, so every replica
  sees the same facts.
- an MCP ``tools/call``: the calls allowed earlier in the same MCP session (``Mcp-Session-Id``;
  for the sessionless 2026-07-28 revision, the agent's calls), kept by :class:`SessionStore` in the
  proxy's memory, bounded (sessions and calls per session, least recently used first). Per
  process: with several replicas, route an MCP session to one replica (sticky on
  ``Mcp-Session-Id``), or the counts are those of the calls that replica saw.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from bastion.proxy.objects import TOOL_PREFIX, wildcard_match

Json = dict[str, Any]
SESSIONS_REMEMBERED = 10_000
CALLS_REMEMBERED = 200


@dataclass(frozen=True)
class SessionFacts:
    """The calls made earlier in one session, oldest first: (object, arguments)."""

    calls: tuple[tuple[str, Json], ...] = ()

    def count(self, pattern: object) -> int:
        return sum(1 for obj, _ in self.calls if wildcard_match(obj, str(pattern)))

    def called(self, pattern: object, value: object) -> bool:
        """Whether a call matching ``pattern`` had ``value`` as one of its argument values."""
        wanted = _norm(value)
        return any(wildcard_match(obj, str(pattern)) and wanted in _values(args) for obj, args in self.calls)

    def plus(self, obj: str, args: Json) -> SessionFacts:
        return SessionFacts((*self.calls, (obj, args))[-CALLS_REMEMBERED:])

    def record(self, limit: int = 50) -> list[list[Any]]:
        """The last ``limit`` calls, as a decision record keeps them."""
        return [[obj, args] for obj, args in self.calls[-limit:]]

    @classmethod
    def from_record(cls, record: Any) -> SessionFacts:
        calls = []
        for item in record if isinstance(record, list) else []:
            if isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict):
                calls.append((str(item[0]), item[1]))
        return cls(tuple(calls))


def conversation_facts(calls: tuple[tuple[str, Json], ...]) -> SessionFacts:
    """The facts of a conversation's earlier tool calls (tool names, as models emit them)."""
    return SessionFacts(tuple((TOOL_PREFIX + name, args) for name, args in calls)[-CALLS_REMEMBERED:])


def _norm(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _values(value: Any) -> list[object]:
    if isinstance(value, dict):
        return [v for item in value.values() for v in _values(item)]
    if isinstance(value, list | tuple):
        return [v for item in value for v in _values(item)]
    return [_norm(value)]


class SessionStore:
    """The calls allowed in each MCP session, bounded (see the module's docstring)."""

    def __init__(self, sessions: int = SESSIONS_REMEMBERED, calls: int = CALLS_REMEMBERED) -> None:
        self.sessions, self.calls = sessions, calls
        self._store: OrderedDict[str, deque[tuple[str, Json]]] = OrderedDict()
        self._lock = threading.Lock()

    def facts(self, session: str) -> SessionFacts:
        with self._lock:
            found = self._store.get(session)
            return SessionFacts(tuple(found)) if found is not None else SessionFacts()

    def add(self, session: str, obj: str, args: Json) -> None:
        with self._lock:
            found = self._store.get(session)
            if found is None:
                found = self._store[session] = deque(maxlen=self.calls)
            found.append((obj, args))
            self._store.move_to_end(session)
            while len(self._store) > self.sessions:
                self._store.popitem(last=False)

    def __len__(self) -> int:
        return len(self._store)
