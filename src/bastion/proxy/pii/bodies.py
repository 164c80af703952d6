"""The texts inside the APIs' JSON, rewritten in place of the originals.

One walk serves every format (OpenAI chat and Responses, Anthropic messages, Gemini, MCP): strings under
text-bearing keys (``content``, ``text``, ``input``, ``instructions``, ``system``, ``output``, ...)
are texts; tool-call arguments (OpenAI's JSON strings, Anthropic's ``input`` objects, MCP's
``arguments`` and ``structuredContent``) are texts in every string leaf. Identifiers, names,
roles, models and tool definitions are left alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bastion.proxy import jsonlimits

TEXT_KEYS = frozenset(
    {"content", "text", "input", "instructions", "system", "output", "arguments", "partial_json", "delta", "refusal"}
)
# Whose object or array values are free-form data: every string inside is a text.
FREE_KEYS = frozenset({"input", "arguments", "structuredContent", "output"})
SKIP_KEYS = frozenset(
    {
        "tools", "tool_choice", "functions", "function_call_schema", "model", "role", "type", "id", "call_id",
        "tool_call_id", "tool_use_id", "name", "metadata", "response_format", "stream_options", "image_url",
        "source", "signature", "data", "status", "object", "finish_reason", "stop_reason", "usage", "_meta",
        "logprobs", "annotations",
    }
)  # fmt: skip

Text = Callable[[str], str]


def walk(
    value: Any, text: Text, key: str | None = None, free: bool = False, extra: frozenset[str] = frozenset()
) -> Any:
    """``value`` with ``text`` applied to every text in it (a new value; the input is not changed).
    ``extra``: keys whose object values are free-form data in this API, beyond ``FREE_KEYS``."""
    if isinstance(value, str):
        if key == "arguments" and not free:
            return _json_text(value, text)
        return text(value) if free or key in TEXT_KEYS else value
    if isinstance(value, list):
        return [walk(item, text, key, free, extra) for item in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not free and k in SKIP_KEYS:
                out[k] = v
            else:
                inner_free = free or ((k in FREE_KEYS or k in extra) and isinstance(v, dict))
                out[k] = walk(v, text, k, inner_free, extra)
        return out
    return value


def _json_text(raw: str, text: Text) -> str:
    """Arguments as a JSON string: each string leaf is a text, and the result is JSON again."""
    try:
        parsed = jsonlimits.loads(raw)
    except ValueError:
        return text(raw)
    if not isinstance(parsed, dict | list):
        return raw if not isinstance(parsed, str) else json.dumps(text(parsed))
    return json.dumps(walk(parsed, text, None, True), ensure_ascii=False)


def texts(value: Any, extra: frozenset[str] = frozenset()) -> list[str]:
    """Every text in ``value``, in order."""
    found: list[str] = []

    def collect(s: str) -> str:
        found.append(s)
        return s

    walk(value, collect, extra=extra)
    return found
