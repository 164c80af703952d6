"""What the runaway breakers read from a request: odd shapes and text never crash them."""

from __future__ import annotations

import pytest

from bastion.proxy.breakers import call_key, conversation_key, first_turn, history_tool_calls


def test_a_history_names_its_tool_calls_in_each_api() -> None:
    body = {
        "messages": [
            {"role": "assistant", "tool_calls": [{"function": {"name": "a", "arguments": '{"x": 1}'}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "name": "b", "input": {"y": 2}}]},
        ]
    }
    assert history_tool_calls(body) == [call_key("a", {"x": 1}), call_key("b", {"y": 2})]
    assert history_tool_calls({"input": [{"type": "function_call", "name": "c", "arguments": "{}"}]}) == [
        call_key("c", {})
    ]
    assert not first_turn(body) and first_turn({"messages": [{"role": "user", "content": "hi"}]})


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "assistant", "tool_calls": 7}]},
        {"messages": [{"role": "assistant", "tool_calls": [7, "x", {"function": "no"}]}]},
        {"messages": [{"role": "assistant", "content": "text"}]},
        {"messages": "not a list", "input": 3},
        ["not", "an", "object"],
    ],
)
def test_odd_histories_have_no_calls(body: object) -> None:
    assert history_tool_calls(body) == []


def test_a_lone_surrogate_still_names_a_conversation() -> None:
    assert conversation_key("agent", None, "broken \udccd text") != conversation_key("agent", None, "broken text")
