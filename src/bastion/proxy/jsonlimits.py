"""JSON that Bastion reads, within limits: what it cannot read whole is refused, never read as something else.

Python's parser and every recursive walk over its result (redaction, policy arguments, tool calls)
stop at the interpreter's recursion limit with a ``RecursionError``, which is no ``ValueError``:
uncaught, it would end the addon that met it and let the call go on unchecked. So JSON from agents
and from upstreams is parsed here, and anything nested deeper than ``MAX_DEPTH`` is a ``ValueError``
like any other bad JSON. Real API bodies, tool schemas included, stay far below it.

Text that Bastion writes back may hold lone UTF-16 surrogates (``"\\ud800"`` is valid JSON), which
UTF-8 cannot encode; :func:`encode` writes them back as the JSON escapes they came as.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 100


def depth_error(value: Any, max_depth: int = MAX_DEPTH) -> str | None:
    """What is wrong with ``value``'s nesting of arrays and objects, or None when it is within ``max_depth``.
    Level by level, without recursion."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            return f"JSON nested deeper than {max_depth} levels"
        inner: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            inner.extend(v for v in children if isinstance(v, dict | list))
        level = inner
    return None


def _constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def loads(raw: str | bytes | bytearray, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` within ``max_depth`` levels; raises ValueError (also for NaN and Infinity) naming the problem."""
    try:
        value = json.loads(raw, parse_constant=_constant)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    problem = depth_error(value, max_depth)
    if problem is not None:
        raise ValueError(problem)
    return value


def dumps(value: Any, compact: bool = False) -> str:
    separators = (",", ":") if compact else None
    return json.dumps(value, ensure_ascii=False, separators=separators)


def encode(value: Any, compact: bool = False) -> bytes:
    """``value`` as UTF-8 JSON; a lone surrogate becomes its ``\\uXXXX`` escape (valid JSON) instead of an error."""
    return to_utf8(dumps(value, compact))


def to_utf8(text: str) -> bytes:
    """``text`` in UTF-8, lone surrogates written as ``\\uXXXX`` (inside a JSON string, the escape they came as)."""
    return text.encode("utf-8", "backslashreplace")
