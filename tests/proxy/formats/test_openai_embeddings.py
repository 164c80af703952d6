"""OpenAI embeddings: an OpenAI model call without tools, streams or instructions."""

from __future__ import annotations

from bastion.proxy import formats
from bastion.proxy.formats.openai_embeddings import FORMAT


def test_embeddings_are_recognised_and_take_no_guidance() -> None:
    assert formats.recognise("openai", "POST", "/v1/embeddings") is FORMAT
    assert FORMAT.model({"model": "m", "input": "x"}, "/v1/embeddings") == "m"
    assert FORMAT.govern is None and FORMAT.with_guidance is None and FORMAT.redact_event is None
    assert FORMAT.error_body(403, "no", "policy_denied")["error"]["type"] == "permission_denied"
    assert FORMAT.first_user_text({"input": "x"}) == "x"
