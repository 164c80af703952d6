"""The script: what the scripted model answers, derived only from the request.

Every API (OpenAI chat, OpenAI Responses, Anthropic messages) first reduces its request to a
:class:`Turn`, then :func:`answer` applies these rules, in order:

0. **Loop.** If the last user message says ``keep calling <name>`` naming an offered tool, every
   reply is a call of that tool, tool results included (a runaway model), with the arguments
   that follow the name or placeholders, as in rule 2.
1. **Tool result.** If the last message is a tool result (OpenAI ``role: tool``, Responses
   ``function_call_output``, Anthropic ``tool_result`` block), the reply is the text
   ``Tool result received: <result>``, unless the result says ``call <name> {...}`` naming an
   offered tool: then the reply is that call (as rule 2 reads it), the way a model follows an
   instruction it reads in a tool's output (how prompt injection works, and how a legitimate
   document such as an invoice leads to an action).
2. **Tool call.** If the request offers tools and the last user message contains
   ``call <name>`` (case-insensitive, the name optionally in backticks) naming an offered tool,
   the reply is one call of that tool. Its arguments are the JSON object that directly follows
   the name, if there is one (``call get_weather {"city": "Paris"}``); otherwise every required
   property of the tool's JSON schema gets a placeholder for its type (string ``"scripted"``,
   integer ``1``, number ``1.0``, boolean ``true``, array ``[]``, object ``{}``).
3. **Text.** Otherwise the reply is ``Scripted reply to: <last user text>``.

Token counts are whitespace-separated words (at least 1): input tokens over all message text,
output tokens over the reply text or the tool call's JSON arguments. Identifiers are hashes of
the request body, so the same request always gets the same answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

_CALL = re.compile(r"\bcall\s+`?([A-Za-z_][\w.-]*)`?", re.IGNORECASE)
_LOOP = re.compile(r"\bkeep\s+calling\s+`?([A-Za-z_][\w.-]*)`?", re.IGNORECASE)
_PLACEHOLDERS: dict[str, Any] = {
    "string": "scripted",
    "integer": 1,
    "number": 1.0,
    "boolean": True,
    "array": [],
    "object": {},
}


@dataclass(frozen=True)
class Turn:
    """A request reduced to what the script looks at."""

    user_text: str
    all_text: str
    tool_result: str | None = None
    tools: dict[str, Json] = field(default_factory=dict)  # tool name -> JSON schema


@dataclass(frozen=True)
class ToolCall:
    key: str  # the request's stable id; each API prefixes it ("call_", "toolu_")
    name: str
    arguments: Json

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments)


@dataclass(frozen=True)
class Reply:
    text: str | None
    tool_call: ToolCall | None
    input_tokens: int
    output_tokens: int


def answer(turn: Turn, request_id: str) -> Reply:
    """Apply the script's rules to a turn; ``request_id`` becomes the tool call's key."""
    input_tokens = count_tokens(turn.all_text)
    looping = _tool_call(turn, turn.user_text, request_id, _LOOP)
    if looping is not None:
        return Reply(None, looping, input_tokens, count_tokens(looping.arguments_json))
    call = _tool_call(turn, turn.user_text if turn.tool_result is None else turn.tool_result, request_id)
    if call is not None:
        return Reply(None, call, input_tokens, count_tokens(call.arguments_json))
    if turn.tool_result is None:
        text = f"Scripted reply to: {turn.user_text}"
    else:
        text = f"Tool result received: {turn.tool_result}"
    return Reply(text, None, input_tokens, count_tokens(text))


def _tool_call(turn: Turn, text: str, request_id: str, pattern: re.Pattern[str] = _CALL) -> ToolCall | None:
    for match in pattern.finditer(text):
        name = match.group(1)
        if name in turn.tools:
            args = _json_object_at(text[match.end() :])
            if args is None:
                args = placeholder_arguments(turn.tools[name])
            return ToolCall(request_id, name, args)
    return None


def _json_object_at(text: str) -> Json | None:
    text = text.lstrip()
    if not text.startswith("{"):
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def placeholder_arguments(schema: Any) -> Json:
    """Arguments for the schema's required properties, one placeholder per type."""
    schema = schema if isinstance(schema, dict) else {}
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = schema.get("required")
    names = required if isinstance(required, list) else list(props)
    out: Json = {}
    for name in names:
        prop = props.get(name)
        kind = prop.get("type") if isinstance(prop, dict) else None
        out[str(name)] = _PLACEHOLDERS.get(kind, "scripted") if isinstance(kind, str) else "scripted"
    return out


def text_of(content: Any) -> str:
    """The plain text inside any provider's message content (strings, parts, nested blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(t for t in (text_of(part) for part in content) if t)
    if isinstance(content, dict):
        if isinstance(content.get("text"), str):
            return str(content["text"])
        for key in ("content", "output"):
            if key in content:
                return text_of(content[key])
    return ""


def count_tokens(text: str) -> int:
    return max(1, len(text.split()))


def stable_id(body: Any) -> str:
    """A short id that depends only on the request body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def split_text(text: str, pieces: int = 4) -> list[str]:
    """Split at word boundaries into at most ``pieces`` non-empty parts that join back to ``text``."""
    return ["".join(part) for part in _spread(re.split(r"(?<=\s)(?=\S)", text), pieces)] or [text]


def split_chars(text: str, pieces: int = 3) -> list[str]:
    """Split into at most ``pieces`` non-empty parts of about equal length."""
    return ["".join(part) for part in _spread(list(text), pieces)] or [text]


def _spread(items: list[str], pieces: int) -> list[list[str]]:
    n = len(items)
    parts = [items[i * n // pieces : (i + 1) * n // pieces] for i in range(pieces)]
    return [p for p in parts if p]
