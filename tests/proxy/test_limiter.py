import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bastion.proxy.breakers import call_key
from bastion.proxy.limiter import Attempt, Limiter, Refusal, Ticket
from bastion.proxy.limits import parse
from bastion.proxy.provenance import Conversation, read_chat, read_gemini, read_messages, read_responses


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def limiter(raw: dict[str, Any]) -> tuple[Limiter, Clock]:
    clock = Clock()
    return Limiter(parse(Path("bastion.yaml"), raw), clock), clock


def attempt(**kw: Any) -> Attempt:
    base: dict[str, Any] = {
        "agent": "a1",
        "role": "assistant",
        "key_id": "k1",
        "target": "model:scripted-small",
        "upstream": "model:80",
        "conversation": "c1",
    }
    return Attempt(**{**base, **kw})


def admitted(found: tuple[Ticket | None, Refusal | None]) -> Ticket:
    ticket, refusal = found
    assert refusal is None and ticket is not None
    return ticket


def refused(found: tuple[Ticket | None, Refusal | None]) -> Refusal:
    ticket, refusal = found
    assert ticket is None and refusal is not None
    return refusal


def test_requests_per_second_refuse_with_retry_after_and_the_limits_name() -> None:
    lim, clock = limiter({"defaults": {"requests_per_second": 2}})
    admitted(lim.check(attempt()))
    admitted(lim.check(attempt()))
    refusal = refused(lim.check(attempt()))
    assert (refusal.rule, refusal.code, refusal.status, refusal.retry_after) == (
        "limit:rate:agent",
        "rate_limit_exceeded",
        429,
        1,
    )
    assert "2 requests per second for agent a1" in refusal.message
    admitted(lim.check(attempt(agent="a2")))  # each agent has its own
    clock.now += 0.5
    admitted(lim.check(attempt()))


def test_a_target_limit_is_shared_by_every_agent_and_a_refused_call_costs_nothing() -> None:
    lim, _ = limiter(
        {"defaults": {"requests_per_minute": 2}, "targets": [{"match": "tool:*/search", "requests_per_minute": 2}]}
    )
    admitted(lim.check(attempt(agent="a1", target="tool:tools/search")))
    admitted(lim.check(attempt(agent="a2", target="tool:tools/search")))
    assert refused(lim.check(attempt(agent="a1", target="tool:tools/search"))).rule == "limit:rate:target"
    admitted(lim.check(attempt(agent="a1", target="model:x")))  # the refusal took none of a1's


def test_tokens_are_estimated_then_corrected_from_usage() -> None:
    lim, _ = limiter({"defaults": {"tokens_per_minute": 1000}})
    ticket = admitted(lim.check(attempt(tokens=900)))
    assert refused(lim.check(attempt(tokens=200))).rule == "limit:tokens:agent"
    lim.settle(ticket, failed=False, used_tokens=100)  # it used far less than estimated
    admitted(lim.check(attempt(tokens=200)))


def test_the_step_budget_stops_a_conversation_and_raises_an_alert() -> None:
    lim, _ = limiter({"defaults": {"max_steps": 3, "suspend_on_trip": True}})
    for _ in range(3):
        admitted(lim.check(attempt()))
    refusal = refused(lim.check(attempt()))
    assert (refusal.rule, refusal.code, refusal.status) == ("limit:runaway:steps", "step_budget_exceeded", 403)
    assert refusal.alert == "runaway_agent" and refusal.suspend
    admitted(lim.check(attempt(conversation="c2")))


def test_the_same_mcp_tool_call_repeated_is_stopped() -> None:
    lim, _ = limiter({"defaults": {"max_repeats": 2}})
    same = call_key("get_weather", {"city": "Paris"})
    admitted(lim.check(attempt(tool_call=same)))
    admitted(lim.check(attempt(tool_call=call_key("get_weather", {"city": "Rome"}))))
    admitted(lim.check(attempt(tool_call=same)))
    refusal = refused(lim.check(attempt(tool_call=same)))
    assert refusal.rule == "limit:runaway:repeat" and "get_weather" in refusal.message


@pytest.mark.parametrize(
    ("read", "body"),
    [
        (
            read_chat,
            {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}]}]},
        ),
        (read_responses, {"input": [{"type": "function_call", "name": "f", "arguments": '{"a":1}'}]}),
        (
            read_messages,
            {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {"a": 1}}]}]},
        ),
        (read_gemini, {"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]}]}),
    ],
)
def test_tool_calls_in_a_history_are_read_in_every_api(
    read: Callable[[Any], Conversation], body: dict[str, Any]
) -> None:
    assert [call_key(name, args) for name, args in read(body).calls] == [call_key("f", {"a": 1})]


def test_a_model_asking_for_the_same_call_again_and_again_is_stopped() -> None:
    lim, _ = limiter({"defaults": {"max_repeats": 2}})
    calls = (call_key("f", {"a": 1}),) * 2
    admitted(lim.check(attempt(history_calls=calls)))
    assert refused(lim.check(attempt(history_calls=(*calls, calls[0])))).code == "repeated_tool_call"


def test_an_error_streak_pauses_the_agent_and_failures_open_the_upstreams_circuit() -> None:
    lim, clock = limiter(
        {
            "defaults": {"error_streak": 2, "error_cooldown_seconds": 10},
            "upstreams": {"failures": 3, "cooldown_seconds": 30},
        }
    )
    trips = [lim.settle(admitted(lim.check(attempt())), failed=True, used_tokens=None) for _ in range(2)]
    assert trips[0] == [] and [t.alert for t in trips[1]] == ["runaway_agent"]
    refusal = refused(lim.check(attempt()))
    assert (refusal.rule, refusal.status, refusal.retry_after) == ("limit:runaway:errors", 429, 10)
    trips = [lim.settle(admitted(lim.check(attempt(agent=f"b{i}"))), True, None) for i in range(1)]
    assert [t.alert for t in trips[0]] == ["upstream_circuit_open"]
    refusal = refused(lim.check(attempt(agent="c")))
    assert (refusal.rule, refusal.code, refusal.status, refusal.retry_after) == (
        "limit:circuit:upstream",
        "upstream_circuit_open",
        503,
        30,
    )
    clock.now += 30  # after the cool-down a call goes through; one more failure opens it again
    ticket = admitted(lim.check(attempt(agent="c")))
    assert [t.alert for t in lim.settle(ticket, True, None)] == ["upstream_circuit_open"]
    clock.now += 30
    lim.settle(admitted(lim.check(attempt(agent="c"))), False, None)  # a success closes it
    lim.settle(admitted(lim.check(attempt(agent="c"))), True, None)
    admitted(lim.check(attempt(agent="c")))


def test_concurrency_queues_then_refuses_an_agent_429_and_a_full_upstream_503() -> None:
    async def main() -> None:
        lim, _ = limiter(
            {
                "defaults": {"concurrency": 1, "queue": 1, "queue_timeout_seconds": 0.05},
                "upstreams": {"concurrency": 2, "queue": 0},
            }
        )
        first = admitted(lim.check(attempt()))
        assert await lim.enter(first) is None
        second = admitted(lim.check(attempt()))
        waiting = asyncio.create_task(lim.enter(second))
        await asyncio.sleep(0)
        third = await lim.enter(admitted(lim.check(attempt())))  # the queue of one is taken
        assert third is not None and (third.rule, third.status) == ("limit:concurrency:agent", 429)
        lim.settle(first, False, None)
        assert await waiting is None  # it got the slot first passed on
        other = admitted(lim.check(attempt(agent="a2")))
        assert await lim.enter(other) is None  # another agent is not starved
        busy = await lim.enter(admitted(lim.check(attempt(agent="a3"))))
        assert busy is not None and (busy.rule, busy.code, busy.status) == (
            "limit:concurrency:upstream",
            "upstream_busy",
            503,
        )
        timed_out = await lim.enter(admitted(lim.check(attempt())))
        assert timed_out is not None and timed_out.code == "concurrency_limit_exceeded"

    asyncio.run(main())


def test_a_conversation_that_starts_again_counts_again() -> None:
    lim, _ = limiter({"defaults": {"max_steps": 1}})
    for _ in range(3):  # identical one-shot requests: each starts its conversation
        admitted(lim.check(attempt(fresh=True)))
    assert refused(lim.check(attempt())).rule == "limit:runaway:steps"


@pytest.mark.parametrize(
    ("read", "body", "first"),
    [
        (read_chat, {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]}, True),
        (read_responses, {"input": "hi"}, True),
        (read_chat, {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, False),
        (read_responses, {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, False),
        (read_gemini, {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, True),
        (read_gemini, {"contents": [{"role": "model", "parts": [{"text": "yo"}]}]}, False),
    ],
)
def test_a_first_turn_has_no_model_turn_in_its_history(
    read: Callable[[Any], Conversation], body: dict[str, Any], first: bool
) -> None:
    assert (not read(body).answered) is first
