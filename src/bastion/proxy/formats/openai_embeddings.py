"""OpenAI embeddings (``POST .../embeddings``): texts in ``input``, no tools, no streams."""

from __future__ import annotations

from bastion import semconv
from bastion.proxy.formats import openai_responses
from bastion.proxy.formats.base import ApiFormat, ends_with
from bastion.proxy.formats.openai_chat import error_body, error_event

FORMAT = ApiFormat(
    name="embeddings",
    provider="openai",
    provider_name=semconv.PROVIDER_OPENAI,
    operation=semconv.OPERATION_EMBEDDINGS,
    recognises=ends_with("embeddings"),
    error_body=error_body,
    error_event=error_event,
    # A string input names the conversation, as a Responses turn's does.
    first_user_text=openai_responses.first_user_text,
)
