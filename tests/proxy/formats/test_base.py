"""What every format answers alike: recognition, the conversation an approver sees, guidance added where
each API keeps instructions, the first user text, and error bodies in the caller's format."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.proxy import formats
from bastion.proxy.formats import ApiFormat
from bastion.proxy.formats.base import GUIDANCE_PREFIX

G = GUIDANCE_PREFIX + "stop"
BY_NAME = {fmt.name: fmt for fmt in formats.FORMATS}


def with_guidance(body: dict[str, Any], endpoint: str, text: str) -> Any:
    add = BY_NAME[endpoint].with_guidance
    return add(body, text) if add is not None else None


def last_messages(body: Any, endpoint: str, count: int) -> list[dict[str, Any]]:
    return BY_NAME[endpoint].last_messages(body, count)


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


@pytest.mark.parametrize(
    ("provider", "method", "path", "name"),
    [
        ("openai", "POST", "/v1/chat/completions", "chat.completions"),
        ("openai", "POST", "/v1/responses/", "responses"),
        ("openai", "POST", "/v1/embeddings", "embeddings"),
        ("anthropic", "POST", "/v1/messages", "messages"),
        ("anthropic", "POST", "/v1/chat/completions", None),
        ("openai", "GET", "/v1/chat/completions", None),
        ("http", "POST", "/v1/messages", None),
    ],
)
def test_a_call_is_recognised_by_provider_method_and_path(provider: str, method: str, path: str, name: str) -> None:
    found = formats.recognise(provider, method, path)
    assert (found.name if found else None) == name


@pytest.mark.parametrize(
    ("endpoint", "body", "text"),
    [
        ("chat.completions", {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}, "u"),
        ("responses", {"input": "hello"}, "hello"),
        ("responses", {"input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}, "hi"),
        ("messages", {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}, "a"),
        ("embeddings", {"input": "x"}, "x"),
    ],
)
def test_the_first_user_text_names_the_conversation(endpoint: str, body: dict[str, Any], text: str) -> None:
    assert BY_NAME[endpoint].first_user_text(body) == text


def test_only_the_responses_api_continues_an_earlier_response() -> None:
    body = {"previous_response_id": "resp_1", "messages": []}
    assert [fmt.name for fmt in formats.FORMATS if fmt.continues(body)] == ["responses"]


def test_every_format_has_one_provider_error_and_its_own_name() -> None:
    names = [fmt.name for fmt in formats.FORMATS]
    assert len(names) == len(set(names))
    for fmt in formats.FORMATS:
        assert isinstance(fmt, ApiFormat)
        assert fmt.error_body(403, "no", "policy_denied") == formats.for_provider(fmt.provider).error_body(  # type: ignore[union-attr]
            403, "no", "policy_denied"
        )
