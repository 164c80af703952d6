"""What a model request says, and what a human adds to it: plain functions on request bodies.

``last_messages`` picks the conversation's last messages (the context an approver sees);
``with_guidance`` returns the body with a human's guidance added where each API puts
instructions: a system message (OpenAI chat), ``instructions`` (OpenAI Responses) or ``system``
(Anthropic Messages).
"""

from __future__ import annotations

import copy
from typing import Any

Json = dict[str, Any]
GUIDANCE_PREFIX = "Guidance from a human supervisor (via Bastion): "
CHAT, RESPONSES, MESSAGES = "chat.completions", "responses", "messages"
MAX_CHARS = 2000


def _short(content: Any) -> Any:
    if isinstance(content, str) and len(content) > MAX_CHARS:
        return content[:MAX_CHARS] + "…"
    return content


def last_messages(body: Any, endpoint: str, count: int) -> list[Json]:
    """The last ``count`` messages of a chat request, each ``{"role", "content"}``."""
    if not isinstance(body, dict) or count <= 0:
        return []
    found: list[Json] = []
    if endpoint in (CHAT, MESSAGES):
        if endpoint == MESSAGES and body.get("system"):
            found.append({"role": "system", "content": body["system"]})
        messages = body.get("messages")
        if isinstance(messages, list):
            found += [m for m in messages if isinstance(m, dict)]
    elif endpoint == RESPONSES:
        if body.get("instructions"):
            found.append({"role": "system", "content": body["instructions"]})
        items = body.get("input")
        if isinstance(items, str):
            found.append({"role": "user", "content": items})
        elif isinstance(items, list):
            found += [i for i in items if isinstance(i, dict)]
    return [{"role": m.get("role", m.get("type", "")), "content": _short(m.get("content", m))} for m in found[-count:]]


def with_guidance(body: Json, endpoint: str, text: str) -> Json | None:
    """The body with ``text`` added as instructions, or ``None`` for an endpoint without them."""
    guidance = GUIDANCE_PREFIX + text
    new = copy.deepcopy(body)
    if endpoint == CHAT and isinstance(new.get("messages"), list):
        new["messages"].append({"role": "system", "content": guidance})
    elif endpoint == RESPONSES:
        before = new.get("instructions")
        new["instructions"] = f"{before}\n\n{guidance}" if isinstance(before, str) and before else guidance
    elif endpoint == MESSAGES:
        system = new.get("system")
        if isinstance(system, list):
            new["system"] = [*system, {"type": "text", "text": guidance}]
        elif isinstance(system, str) and system:
            new["system"] = f"{system}\n\n{guidance}"
        else:
            new["system"] = guidance
    else:
        return None
    return new
