"""What a model response says about itself: model, id and token usage, streaming or not."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bastion.proxy import jsonlimits


@dataclass
class Usage:
    response_model: str | None = None
    response_id: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    # Of the input tokens (which include them, as the GenAI conventions ask): read from the
    # provider's prompt cache, and written to it (Anthropic).
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    finish_reasons: list[str] = field(default_factory=list)

    def update(self, body: Any) -> None:
        """Fold in a JSON response body or one streamed event's data, of any supported API."""
        if not isinstance(body, dict):
            return
        # Responses API events and Anthropic's message_start wrap the object.
        for wrapper in ("response", "message"):
            if isinstance(body.get(wrapper), dict):
                self.update(body[wrapper])
        if isinstance(body.get("model"), str):
            self.response_model = body["model"]
        if isinstance(body.get("id"), str) and self.response_id is None:
            self.response_id = body["id"]
        self._update_tokens(body.get("usage"))
        self._update_finish(body)

    def _update_tokens(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        # Anthropic counts cache reads and writes apart from input_tokens; OpenAI (and Gemini's
        # OpenAI-compatible API) includes cached tokens in prompt_tokens / input_tokens.
        read, written = _count(usage, "cache_read_input_tokens"), _count(usage, "cache_creation_input_tokens")
        for key in ("prompt_tokens", "input_tokens"):
            if isinstance(usage.get(key), int) and usage[key] > 0:
                self.input_tokens = usage[key] + (read or 0) + (written or 0)
        for key in ("completion_tokens", "output_tokens"):
            if isinstance(usage.get(key), int):
                self.output_tokens = usage[key]
        for details in ("prompt_tokens_details", "input_tokens_details"):
            if isinstance(usage.get(details), dict):
                read = _count(usage[details], "cached_tokens") if read is None else read
        if read is not None:
            self.cache_read_tokens = read
        if written is not None:
            self.cache_creation_tokens = written

    def _update_finish(self, body: dict[str, Any]) -> None:
        reasons = [c.get("finish_reason") for c in body.get("choices") or [] if isinstance(c, dict)]
        reasons.append(body.get("stop_reason"))
        if isinstance(body.get("delta"), dict):
            reasons.append(body["delta"].get("stop_reason"))
        for reason in reasons:
            if isinstance(reason, str) and reason not in self.finish_reasons:
                self.finish_reasons.append(reason)

    def update_from_event_data(self, data: str) -> None:
        if not data or data == "[DONE]":
            return
        try:
            self.update(jsonlimits.loads(data))
        except ValueError:
            return


def _count(mapping: dict[str, Any], key: str) -> int | None:
    value = mapping.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
