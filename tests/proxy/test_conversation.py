"""The conversation an approver sees, and guidance added where each API keeps instructions."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.proxy.conversation import GUIDANCE_PREFIX, last_messages, with_guidance

G = GUIDANCE_PREFIX + "stop"


@pytest.mark.parametrize(
    ("endpoint", "body", "expected"),
    [
        (
            "chat.completions",
            {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]},
            {
                "messages": [
                    {"role": "system", "content": "s"},
                    {"role": "user", "content": "u"},
                    {"role": "system", "content": G},
                ]
            },
        ),
        ("responses", {"input": "hi"}, {"input": "hi", "instructions": G}),
        ("responses", {"input": "hi", "instructions": "be brief"}, {"input": "hi", "instructions": f"be brief\n\n{G}"}),
        ("messages", {"messages": []}, {"messages": [], "system": G}),
        ("messages", {"messages": [], "system": "s"}, {"messages": [], "system": f"s\n\n{G}"}),
        (
            "messages",
            {"messages": [], "system": [{"type": "text", "text": "s"}]},
            {"messages": [], "system": [{"type": "text", "text": "s"}, {"type": "text", "text": G}]},
        ),
        ("embeddings", {"input": "x"}, None),
    ],
)
def test_guidance_goes_where_instructions_go(endpoint: str, body: dict[str, Any], expected: Any) -> None:
    before = repr(body)
    assert with_guidance(body, endpoint, "stop") == expected
    assert repr(body) == before  # the original is left alone


def test_last_messages_keep_the_end_of_the_conversation() -> None:
    body = {"messages": [{"role": "user", "content": str(n)} for n in range(10)]}
    assert last_messages(body, "chat.completions", 2) == [
        {"role": "user", "content": "8"},
        {"role": "user", "content": "9"},
    ]
    assert last_messages({"input": "goal", "instructions": "i"}, "responses", 5) == [
        {"role": "system", "content": "i"},
        {"role": "user", "content": "goal"},
    ]
    assert last_messages({"system": "s", "messages": []}, "messages", 5) == [{"role": "system", "content": "s"}]
    assert last_messages("nope", "chat.completions", 5) == []
