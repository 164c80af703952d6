"""The format-independent parts: arguments, verdicts, explanations, request tool lists, stream glue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bastion.proxy import jsonedit
from bastion.proxy.decision import Decision, Effect, PolicyRequest
from bastion.proxy.formats import anthropic as toolcalls_anthropic
from bastion.proxy.formats import openai_chat as toolcalls_chat
from bastion.proxy.formats import openai_responses as toolcalls_responses
from bastion.proxy.toolcalls import (
    DECISION_ERROR_RULE,
    INVALID_ARGUMENTS_RULE,
    Judge,
    ToolCall,
    Verdict,
    blocked_code,
    blocked_message,
    filter_tools,
    parse_arguments,
    stream_callback,
)
from factories.toolcalls import judge


@pytest.mark.parametrize(
    ("raw", "args", "problem"),
    [
        ('{"city": "Paris"}', {"city": "Paris"}, None),
        ({"city": "Paris"}, {"city": "Paris"}, None),
        ("", {}, None),
        ("  ", {}, None),
        ('{"city": "Par', {}, "not valid JSON"),
        ("[1, 2]", {}, "a JSON list, not an object"),
        ('"x"', {}, "a JSON str, not an object"),
        (None, {}, "missing"),
        (7, {}, "a JSON int, not an object"),
        ('{"x": ' + "[" * 5000 + "]" * 5000 + "}", {}, "not valid JSON (JSON nested deeper than 100 levels)"),
    ],
)
def test_arguments_parse_to_an_object_or_say_what_is_wrong(raw: Any, args: dict[str, Any], problem: str | None) -> None:
    parsed, found = parse_arguments(raw)
    assert parsed == args
    assert found == problem if problem is None else found is not None and found.startswith(problem)


@pytest.mark.parametrize(
    ("name", "arguments", "effect", "rule", "wording"),
    [
        ("get_weather", '{"city": "Paris"}', Effect.ALLOW, "weather-lookups", None),
        ("send_email", '{"to": "x@evil.com"}', Effect.DENY, "default-deny", "rule 'default-deny'"),
        ("send_email", '{"body": "no to"}', Effect.DENY, "condition-error", "could not be evaluated"),
        ("send_email", '{"to": "bob@example.com"}', Effect.ALLOW, "company-mail-only", None),
        ("delete_user", '{"id": 1}', Effect.DENY, "never-delete", "denied by rule 'never-delete'"),
        ("send_money", {"amount": 500, "recipient": "a"}, Effect.REVIEW, "large-payments-need-approval", "approval"),
        ("get_weather", '{"city": "Par', Effect.DENY, INVALID_ARGUMENTS_RULE, "not valid JSON"),
        ("unknown_tool", "{}", Effect.DENY, "default-deny", "no rule allows call on tool:unknown_tool"),
    ],
)
def test_verdicts_name_the_rule_and_explain_it(
    tmp_path: Path, name: str, arguments: Any, effect: Effect, rule: str, wording: str | None
) -> None:
    verdict = judge(tmp_path)(ToolCall("call_1", name, arguments))
    assert (verdict.decision.effect, verdict.decision.rule) == (effect, rule)
    assert verdict.request.obj == f"tool:{name}" and verdict.request.act == "call"
    if wording is not None:
        text = verdict.explanation
        assert f"'{name}'" in text and "call_1" in text and "not run" in text and wording in text


def test_review_is_refused_with_its_own_wording(tmp_path: Path) -> None:
    verdict = judge(tmp_path)(ToolCall("c", "send_money", {"amount": 500, "recipient": "a"}))
    assert not verdict.allowed
    assert "requires a human's approval" in verdict.explanation
    assert blocked_code([verdict]) == "approval_required"
    assert "requires a human's approval" in blocked_message([verdict])


def test_a_call_seen_again_is_decided_and_recorded_once(tmp_path: Path) -> None:
    recorded: list[Verdict] = []
    j = judge(tmp_path, recorded)
    first = j(ToolCall("c1", "get_weather", '{"city": "Paris"}'))
    assert j(ToolCall("c1", "get_weather", '{"city": "Paris"}')) is first
    j(ToolCall("c1", "get_weather", '{"city": "Rome"}'))  # other arguments: decided again
    assert len(recorded) == len(j.verdicts) == 2


def test_a_failing_policy_or_recorder_fails_closed_without_breaking(tmp_path: Path) -> None:
    def broken(request: PolicyRequest) -> Decision:
        raise RuntimeError("boom")

    def bad_recorder(verdict: Verdict) -> None:
        raise RuntimeError("telemetry down")

    verdict = Judge(broken, "a", "r", bad_recorder)(ToolCall("c", "get_weather", "{}"))
    assert (verdict.decision.effect, verdict.decision.rule) == (Effect.DENY, DECISION_ERROR_RULE)


# Requests: tools offered to the model.

WEATHER_FN = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
DELETE_FN = {"type": "function", "function": {"name": "delete_user", "parameters": {}}}
FORMATS = {
    "chat": toolcalls_chat.FORMAT,
    "responses": toolcalls_responses.FORMAT,
    "anthropic": toolcalls_anthropic.FORMAT,
}


@pytest.mark.parametrize(
    ("api", "body", "hidden", "expected", "forced"),
    [
        (
            "chat",
            {"model": "m", "tools": [WEATHER_FN, DELETE_FN], "tool_choice": "auto"},
            ["delete_user"],
            {"model": "m", "tools": [WEATHER_FN], "tool_choice": "auto"},
            None,
        ),
        (
            "chat",
            {"model": "m", "tools": [DELETE_FN], "tool_choice": "auto", "parallel_tool_calls": True, "n": 1},
            ["delete_user"],
            {"model": "m", "n": 1},
            None,
        ),
        (
            "chat",
            {
                "model": "m",
                "tools": [WEATHER_FN, DELETE_FN],
                "tool_choice": {"type": "function", "function": {"name": "delete_user"}},
            },
            ["delete_user"],
            None,
            "delete_user",
        ),
        (
            "chat",
            {"model": "m", "tools": [{"type": "custom", "custom": {"name": "delete_user"}}, WEATHER_FN]},
            ["delete_user"],
            {"model": "m", "tools": [WEATHER_FN]},
            None,
        ),
        (
            "chat",
            {"model": "m", "functions": [{"name": "delete_user"}, {"name": "get_weather"}], "function_call": "auto"},
            ["delete_user"],
            {"model": "m", "functions": [{"name": "get_weather"}], "function_call": "auto"},
            None,
        ),
        (
            "responses",
            {
                "model": "m",
                "tools": [
                    {"type": "web_search"},
                    {"type": "function", "name": "delete_user"},
                    {"type": "custom", "name": "send_money"},
                ],
            },
            ["delete_user"],
            {"model": "m", "tools": [{"type": "web_search"}, {"type": "custom", "name": "send_money"}]},
            None,
        ),
        (
            "anthropic",
            {
                "model": "m",
                "tools": [{"name": "delete_user", "input_schema": {}}],
                "tool_choice": {"type": "any"},
                "max_tokens": 5,
            },
            ["delete_user"],
            {"model": "m", "max_tokens": 5},
            None,
        ),
        (
            "anthropic",
            {"model": "m", "tools": [{"name": "get_weather"}, {"name": "send_email"}]},
            [],
            None,
            None,
        ),
    ],
)
def test_offered_tools_are_filtered_by_policy(
    tmp_path: Path,
    api: str,
    body: dict[str, Any],
    hidden: list[str],
    expected: dict[str, Any] | None,
    forced: str | None,
) -> None:
    from factories.toolcalls import engine

    policy = engine(tmp_path)
    text = json.dumps(body, indent=1)
    result = filter_tools(
        text, body, FORMATS[api].tool_lists, lambda n: policy.visible("a", "assistant", f"tool:{n}", "call")
    )
    assert result.hidden == hidden and result.forced == forced
    if expected is None and forced is None:
        assert result.text is None
    elif expected is not None:
        assert result.text is not None and json.loads(result.text) == expected


def test_filtering_keeps_every_other_byte() -> None:
    tools = '[ {"name":"get_weather", "x": 1.50},{"name":"delete_user"} ,{"name":"é"}]'
    text = '{ "model":"m",\n  "tools" : ' + tools + ',"z":[1,2] }'
    body = json.loads(text)
    result = filter_tools(text, body, toolcalls_anthropic.TOOL_LISTS, lambda n: n != "delete_user")
    assert result.text == '{ "model":"m",\n  "tools" : [{"name":"get_weather", "x": 1.50}, {"name":"é"}],"z":[1,2] }'


@pytest.mark.parametrize(
    ("text", "changes", "expected"),
    [
        ('{"a": 1, "b": 2, "c": 3}', {"b": None}, '{"a": 1, "c": 3}'),
        ('{"a": 1, "b": 2, "c": 3}', {"c": None}, '{"a": 1, "b": 2}'),
        ('{"a": 1, "b": 2}', {"a": None}, '{"b": 2}'),
        ('{ "a" : [1] }', {"a": None}, "{  }"),
        ('{"a": {"b": [1, "}"]}, "b": 2}', {"a": "[]"}, '{"a": [], "b": 2}'),
        ('{"a": 1, "a": 2}', {"a": "3"}, '{"a": 3, "a": 3}'),
        ("{}", {"a": None}, "{}"),
    ],
)
def test_jsonedit_changes_only_the_named_members(text: str, changes: dict[str, str | None], expected: str) -> None:
    assert jsonedit.edit(text, changes) == expected
    json.loads(jsonedit.edit(text, changes))


@pytest.mark.parametrize("text", ["[1]", '{"a" 1}', '{"a": 1 "b": 2}', ""])
def test_jsonedit_refuses_what_is_not_an_object(text: str) -> None:
    with pytest.raises(ValueError):
        jsonedit.members(text)


# Stream glue.


class Recorder:
    """A rewriter that records what it is given and echoes it."""

    def __init__(self, fail_on: bytes | None = None) -> None:
        self.closed = False
        self.seen: list[bytes] = []
        self.ended = 0
        self.fail_on = fail_on

    def event(self, raw: bytes) -> list[bytes]:
        if self.fail_on is not None and self.fail_on in raw:
            raise ValueError("broken")
        self.seen.append(raw)
        return [raw]

    def end(self) -> list[bytes]:
        self.ended += 1
        return [b"data: end\n\n"]

    def error(self, message: str, code: str) -> bytes:
        return f"data: error {code}\n\n".encode()


@pytest.mark.parametrize("size", [1, 3, 100])
def test_stream_callback_cuts_whole_events_and_flushes_once(size: int) -> None:
    stream = b"data: a\n\ndata: b\r\n\r\ndata: tail"
    inner_seen: list[bytes] = []

    def inner(chunk: bytes) -> bytes:
        inner_seen.append(chunk)
        return chunk

    rewriter = Recorder()
    callback = stream_callback(rewriter, inner)
    out = b"".join(c for i in range(0, len(stream), size) for c in callback(stream[i : i + size]))
    out += b"".join(callback(b""))
    assert rewriter.seen == [b"data: a\n\n", b"data: b\r\n\r\n", b"data: tail"]
    assert rewriter.ended == 1 and inner_seen[-1] == b"" and b"".join(inner_seen) == stream
    assert out == stream + b"data: end\n\n"


def test_a_failing_rewriter_ends_the_stream_with_an_error() -> None:
    rewriter = Recorder(fail_on=b"bad")
    callback = stream_callback(rewriter)
    error = b"data: ok\n\ndata: error tool_check_failed\n\n"
    assert callback(b"data: ok\n\ndata: bad\n\ndata: later\n\n") == [error]
    assert callback(b"data: more\n\n") == [] and callback(b"") == []
    assert rewriter.closed and rewriter.ended == 0


@pytest.mark.parametrize(
    ("yaml_text", "on_deny", "error"),
    [
        ("", "replace", None),
        ("tool_calls: {on_deny: block}", "block", None),
        ("tool_calls: {on_deny: replace}", "replace", None),
        ("tool_calls: {on_deny: drop}", None, "tool_calls.on_deny has value 'drop'. Not one of replace or block."),
        ("tool_calls: {mode: block}", None, "tool_calls has unknown keys ['mode']"),
        ("tool_calls: block", None, "tool_calls must be a mapping"),
    ],
)
def test_on_deny_is_configured_in_bastion_yaml(
    tmp_path: Path, yaml_text: str, on_deny: str | None, error: str | None
) -> None:
    from bastion.proxy.config import ConfigError, load

    (tmp_path / "bastion.yaml").write_text(f"routes: []\n{yaml_text}\n")
    if error is None:
        assert load(tmp_path).tool_calls.on_deny == on_deny
    else:
        with pytest.raises(ConfigError, match=error.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
            load(tmp_path)
