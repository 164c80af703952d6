"""Model API formats: one module per API, each defining ``FORMAT``, an :class:`~.base.ApiFormat`.

A format is everything the addons know about an API: how its calls are recognised, where their
texts, tool calls and tool results are (JSON and streamed), the tools offered, usage, the error
body of a refusal and what names a conversation. ``Classify`` sets the call's format on its state
(``st.format``) and every later addon asks the format rather than comparing provider or endpoint
names. Modules here may import ``toolcalls``, ``usage``, ``sse``, ``jsonlimits`` and
``pii.bodies`` (pure), never an addon. MCP is a protocol of its own (``proxy/mcp.py``).

Adding a format: a module here with its ``FORMAT``, listed in ``FORMATS`` below; its provider
becomes a valid route ``provider`` in ``bastion.yaml`` (``config.PROVIDERS``).
"""

from __future__ import annotations

from bastion.proxy.formats import anthropic, gemini, openai_chat, openai_embeddings, openai_responses
from bastion.proxy.formats.base import ApiFormat

FORMATS: tuple[ApiFormat, ...] = (
    openai_chat.FORMAT,
    openai_responses.FORMAT,
    openai_embeddings.FORMAT,
    anthropic.FORMAT,
    gemini.FORMAT,
)

__all__ = ["FORMATS", "ApiFormat", "for_provider", "recognise"]


def recognise(provider: str, method: str, path: str) -> ApiFormat | None:
    """The format of a ``method`` request to the upstream ``path`` (without query) on a ``provider``'s route."""
    for fmt in FORMATS:
        if fmt.provider == provider and fmt.recognises(method, path):
            return fmt
    return None


def for_provider(provider: str) -> ApiFormat | None:
    """The provider's first format: its errors are the provider's before a call is recognised."""
    return next((fmt for fmt in FORMATS if fmt.provider == provider), None)
