"""What the runaway breakers read from a request (through its format's conversation): odd shapes and
text never crash them."""

from __future__ import annotations

import pytest

from bastion.proxy.breakers import call_key, conversation_key
from bastion.proxy.provenance import Conversation, read_chat, read_gemini, read_messages, read_responses


def history(conversation: Conversation) -> list[str]:
    return [call_key(name, args) for name, args in conversation.calls]


def test_a_history_names_its_tool_calls_in_each_api() -> None:
    body = {
        "messages": [
            {"role": "assistant", "tool_calls": [{"function": {"name": "a", "arguments": '{"x": 1}'}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "name": "b", "input": {"y": 2}}]},
        ]
    }
    assert history(read_chat(body)) == [call_key("a", {"x": 1})]
    assert history(read_messages(body)) == [call_key("b", {"y": 2})]
    assert history(read_responses({"input": [{"type": "function_call", "name": "c", "arguments": "{}"}]})) == [
        call_key("c", {})
    ]
    assert read_chat(body).answered and not read_chat({"messages": [{"role": "user", "content": "hi"}]}).answered


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "assistant", "tool_calls": 7}]},
        {"messages": [{"role": "assistant", "tool_calls": [7, "x", {"function": "no"}]}]},
        {"messages": [{"role": "assistant", "content": "text"}]},
        {"messages": "not a list", "input": 3, "contents": {"role": "model"}},
        {"contents": [{"role": "model", "parts": [{"functionCall": "no"}, 5]}]},
        ["not", "an", "object"],
    ],
)
def test_odd_histories_have_no_calls(body: object) -> None:
    for read in (read_chat, read_responses, read_messages, read_gemini):
        assert history(read(body)) == []


def test_a_lone_surrogate_still_names_a_conversation() -> None:
    assert conversation_key("agent", None, "broken \udccd text") != conversation_key("agent", None, "broken text")
