from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.proxy.formats import anthropic, openai_chat
from bastion.proxy.pii import audit, bodies
from bastion.proxy.pii.config import Action, EntityRule
from bastion.proxy.pii.detector import Detector, whitespace_pipeline
from bastion.proxy.pii.redactor import Conversation, Redactor, Vault, conversation_key, mask
from bastion.proxy.pii.streams import HoldBack, StreamRedactor, held_from

LABELLED = json.loads((Path(__file__).resolve().parents[2] / "data" / "pii_labelled.json").read_text())
STRUCTURED = {
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS",
    "AWS_ACCESS_KEY", "GITHUB_TOKEN", "SLACK_TOKEN", "OPENAI_API_KEY", "JWT", "PRIVATE_KEY",
}  # fmt: skip
EMAIL = "maria.gonzalez@example.org"
TEXT = f"Write to {EMAIL} or call (415) 555-0134."


def rules(action: Action, response: Action | None = None) -> dict[str, EntityRule]:
    return {e: EntityRule(action, response or action, 0.5) for e in ("EMAIL_ADDRESS", "PHONE_NUMBER")}


@pytest.mark.parametrize(("case"), [c for c in LABELLED if {e for e, _ in c["entities"]} & STRUCTURED])
def test_structured_types_are_always_caught(pattern_detector: Detector, case: dict[str, object]) -> None:
    text = str(case["text"])
    found = {(f.entity, text[f.start : f.end]) for f in pattern_detector.analyze(text)}
    for entity, value in case["entities"]:  # type: ignore[attr-defined]
        if entity in STRUCTURED:
            assert (entity, value) in found


@pytest.mark.parametrize("case", [c for c in LABELLED if not c["entities"]])
def test_sentences_without_pii_have_no_findings(pattern_detector: Detector, case: dict[str, object]) -> None:
    assert pattern_detector.analyze(str(case["text"])) == ()


def test_ner_finds_names(detector: Detector) -> None:
    text = "Ask John Smith in accounting about the budget."
    assert [text[f.start : f.end] for f in detector.analyze(text) if f.entity == "PERSON"] == ["John Smith"]


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (Action.REDACT, "Write to <EMAIL_ADDRESS> or call <PHONE_NUMBER>."),
        (Action.MASK, f"Write to {mask(EMAIL)} or call {mask('(415) 555-0134')}."),
        (Action.ALLOW, TEXT),
        (Action.BLOCK, "Write to <EMAIL_ADDRESS> or call <PHONE_NUMBER>."),
    ],
)
def test_actions(pattern_detector: Detector, action: Action, expected: str) -> None:
    result = Redactor().apply(TEXT, pattern_detector.analyze(TEXT), rules(action), "request")
    assert result.text == expected
    assert result.counts == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}
    assert result.blocked == ({"EMAIL_ADDRESS", "PHONE_NUMBER"} if action is Action.BLOCK else set())


def test_mask_keeps_at_most_the_last_four() -> None:
    assert mask("4111 1111 1111 1111") == "*" * 15 + "1111"
    assert mask("abc") == "***"


def test_hash_is_salted_and_stable(pattern_detector: Detector) -> None:
    found = pattern_detector.analyze(TEXT)
    one = Redactor("a" * 16).apply(TEXT, found, rules(Action.HASH), "request").text
    assert EMAIL not in one and one == Redactor("a" * 16).apply(TEXT, found, rules(Action.HASH), "request").text
    assert one != Redactor("b" * 16).apply(TEXT, found, rules(Action.HASH), "request").text


def test_threshold_and_direction(pattern_detector: Detector) -> None:
    strict = {"PHONE_NUMBER": EntityRule(Action.REDACT, Action.ALLOW, 0.9)}
    assert Redactor().apply(TEXT, pattern_detector.analyze(TEXT), strict, "request").text == TEXT
    lax = {"PHONE_NUMBER": EntityRule(Action.REDACT, Action.ALLOW, 0.5)}
    assert Redactor().apply(TEXT, pattern_detector.analyze(TEXT), lax, "response").text == TEXT


def test_pseudonyms_are_stable_and_restore(pattern_detector: Detector) -> None:
    conversation = Conversation()
    redactor = Redactor()
    first = redactor.apply(TEXT, pattern_detector.analyze(TEXT), rules(Action.PSEUDONYMIZE), "request", conversation)
    assert first.text == "Write to <EMAIL_ADDRESS_1> or call <PHONE_NUMBER_1>."
    again = f"Again: {EMAIL}, and bob@example.com"
    second = redactor.apply(again, pattern_detector.analyze(again), rules(Action.PSEUDONYMIZE), "request", conversation)
    assert second.text == "Again: <EMAIL_ADDRESS_1>, and <EMAIL_ADDRESS_2>"
    assert conversation.restore(second.text) == again
    assert conversation.restore('{"to": "<EMAIL_ADDRESS_2>", "x": "<EMAIL_ADDRESS_9>"}', json_string=True) == (
        '{"to": "bob@example.com", "x": "<EMAIL_ADDRESS_9>"}'
    )
    assert Conversation().restore(second.text) == second.text  # another conversation's placeholders stay


def test_vault_forgets_after_ttl() -> None:
    vault = Vault(ttl=0.0)
    vault.conversation("a").placeholder("EMAIL_ADDRESS", EMAIL)
    assert vault.conversation("b") is not None and len(vault) == 1
    assert conversation_key("agent", None, "hi") != conversation_key("other", None, "hi")
    assert conversation_key("agent", "c1", "hi") != conversation_key("agent", None, "hi")


def test_cache_analyzes_each_text_once(pattern_detector: Detector) -> None:
    pattern_detector.hits = pattern_detector.misses = 0
    turn = [f"turn {i}: write to {EMAIL}" for i in range(20)]
    for n in range(1, 21):
        for text in turn[:n]:
            pattern_detector.analyze(text)
    assert pattern_detector.misses == 20 and pattern_detector.hits == sum(range(20))


def test_cache_is_bounded() -> None:
    small = Detector({"EMAIL_ADDRESS"}, cache_size=2)
    for text in ("a@example.com one", "b@example.com two", "c@example.com three"):
        small.analyze(text)
    assert small.cached("a@example.com one") is None and small.cached("c@example.com three") is not None


@pytest.mark.parametrize(
    ("entity", "secret"),
    [
        ("AWS_ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE"),
        ("GITHUB_TOKEN", "ghp_" + "a1B2" * 9),
        ("GITHUB_TOKEN", "github_pat_" + "A1b2_" * 13),
        ("SLACK_TOKEN", "xoxp-1234567890-0987654321-abcdefABCDEF"),
        ("OPENAI_API_KEY", "sk-" + "Zx9" * 16),
        ("JWT", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
        ("PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----\nMIIBVgIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"),
    ],
)
def test_secrets_are_their_own_types(pattern_detector: Detector, entity: str, secret: str) -> None:
    text = f"config: {secret} (do not share)"
    assert (entity, secret) in {(f.entity, text[f.start : f.end]) for f in pattern_detector.analyze(text)}


def test_no_secret_in_ordinary_words(pattern_detector: Detector) -> None:
    assert pattern_detector.analyze("ask the desk about sk-lines and ghp tokens, AKIA is a prefix") == ()


# Bodies


def test_walk_rewrites_texts_in_every_format_and_leaves_the_rest() -> None:
    upper: Callable[[str], str] = str.upper
    chat = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": '{"to": "x"}'}}]},
            {"role": "tool", "tool_call_id": "c", "content": "done"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "description": "keep"}}],
    }
    out = bodies.walk(chat, upper)
    assert out["messages"][0]["content"][0] == {"type": "text", "text": "HI"}
    assert json.loads(out["messages"][1]["tool_calls"][0]["function"]["arguments"]) == {"to": "X"}
    assert out["messages"][2]["content"] == "DONE" and out["tools"] == chat["tools"] and out["model"] == "m"
    anthropic = {
        "system": "sys",
        "messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"to": "x"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]},
        ],
    }
    out = bodies.walk(anthropic, upper)
    assert out["system"] == "SYS" and out["messages"][0]["content"][0]["input"] == {"to": "X"}
    assert out["messages"][0]["content"][0]["name"] == "f" and out["messages"][1]["content"][0]["content"] == "OK"
    responses = {"instructions": "be", "input": [{"type": "function_call_output", "call_id": "c", "output": "r"}]}
    assert bodies.walk(responses, upper) == {
        "instructions": "BE",
        "input": [{"type": "function_call_output", "call_id": "c", "output": "R"}],
    }
    mcp = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "f", "arguments": {"to": "x"}}}
    assert bodies.walk(mcp, upper)["params"] == {"name": "f", "arguments": {"to": "X"}}


def test_audit_redacts_every_string_when_installed() -> None:
    audit.install(lambda text: text.replace(EMAIL, "<EMAIL_ADDRESS>"))
    try:
        value = {"args": {"recipient": EMAIL}, "note": [f"to {EMAIL}"]}
        assert audit.redact(value) == {"args": {"recipient": "<EMAIL_ADDRESS>"}, "note": ["to <EMAIL_ADDRESS>"]}
        assert value["args"] == {"recipient": EMAIL}
    finally:
        audit.install(None)
    assert audit.redact(EMAIL) == EMAIL


# Streams


def test_holdback_catches_an_entity_split_across_deltas(pattern_detector: Detector) -> None:
    redactor = Redactor()

    def process(text: str, json_string: bool) -> str:
        return redactor.apply(text, pattern_detector.analyze(text), rules(Action.REDACT), "response").text

    def spans(text: str) -> list[tuple[int, int]]:
        return [(f.start, f.end) for f in pattern_detector.analyze(text)]

    text = f"Sure. You can reach her at {EMAIL} or on (415) 555-0134 any time this week, she said."
    for size in (1, 3, 7, 16):
        hold = HoldBack(process, spans, window=32)
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        out = "".join(hold.feed(p) for p in pieces) + hold.flush()
        assert out == "Sure. You can reach her at <EMAIL_ADDRESS> or on <PHONE_NUMBER> any time this week, she said."


@pytest.mark.parametrize(
    ("text", "names", "held"),
    [
        ("Thanks for the report, the fix ships ", False, ""),  # prose flows at once
        ("Thanks for the rep", False, "rep"),  # an unfinished word may still become a value
        ("Call me on +44 20 7946", False, "+44 20 7946"),
        ("Call me on +44 20 7946 ", False, "+44 20 7946 "),
        ("Call me on 415-555-0134 now ", False, ""),
        ("I am 42 years ol", False, "42 years ol"),
        ("My name is Christiane de Va", True, "Christiane de Va"),
        ("My name is Christiane de Va", False, "Va"),
        ("Sure. Please find the report attached. The ", True, ""),  # capitalised stop words are no names
        ("Write to ann@example.org", False, "ann@example.org"),
    ],
)
def test_only_what_could_be_part_of_a_value_is_held(text: str, names: bool, held: str) -> None:
    assert text[held_from(text, names) :] == held


def test_holdback_restores_a_placeholder_split_across_deltas() -> None:
    conversation = Conversation()
    placeholder = conversation.placeholder("EMAIL_ADDRESS", EMAIL)
    hold = HoldBack(lambda text, js: conversation.restore(text, js), None, window=0)
    text = f"Mail {placeholder} today"
    sent = [hold.feed(text[i : i + 3]) for i in range(0, len(text), 3)]
    assert "".join(sent) + hold.flush() == f"Mail {EMAIL} today"
    assert sent[0] == "Mai"  # without analysis only a possible placeholder is held


def sse(data: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def test_stream_redactor_keeps_valid_sse_for_openai_chat() -> None:
    conversation = Conversation()
    placeholder = conversation.placeholder("EMAIL_ADDRESS", EMAIL)
    text = f"Scripted reply to: mail {placeholder} now"
    stream = StreamRedactor(openai_chat.FORMAT, lambda t, js: conversation.restore(t, js), None, 32)
    chunks = [text[i : i + 5] for i in range(0, len(text), 5)]
    events = [sse({"choices": [{"index": 0, "delta": {"content": c}, "finish_reason": None}]}) for c in chunks]
    events.append(sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    wire = b"".join(b"".join(stream(e[: len(e) // 2]) + stream(e[len(e) // 2 :])) for e in events)
    wire += b"".join(stream(b"data: [DONE]\n\n") + stream(b""))
    got = ""
    for block in wire.split(b"\n\n")[:-1]:
        payload = block.decode().removeprefix("data: ")
        if payload != "[DONE]":
            got += json.loads(payload)["choices"][0]["delta"].get("content") or ""
    assert got == f"Scripted reply to: mail {EMAIL} now"


def test_stream_redactor_anthropic_flushes_before_block_stop() -> None:
    conversation = Conversation()
    placeholder = conversation.placeholder("EMAIL_ADDRESS", EMAIL)
    stream = StreamRedactor(anthropic.FORMAT, lambda t, js: conversation.restore(t, js), None, 32)
    wire = b""
    for text in ("to ", placeholder[:6]):
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
        wire += b"".join(stream(sse(delta, "content_block_delta")))
    wire += b"".join(stream(sse({"type": "content_block_stop", "index": 0}, "content_block_stop")))
    texts = [
        json.loads(b.split(b"data: ", 1)[1])["delta"]["text"]
        for b in wire.split(b"\n\n")
        if b"content_block_delta" in b
    ]
    assert "".join(texts) == "to " + placeholder[:6]


def test_a_lone_surrogate_does_not_stop_the_analysis(pattern_detector: Detector) -> None:
    text = "broken \ud800 emoji from alice@example.com"  # valid JSON ("\\ud800"), but not encodable text
    (finding,) = pattern_detector.analyze(text)
    assert text[finding.start : finding.end] == "alice@example.com"


def test_arguments_too_deep_to_parse_are_one_text() -> None:
    deep = '{"to": "alice@example.com", "x": ' + "[" * 5000 + "]" * 5000 + "}"
    message = {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": deep}}]}
    assert bodies.texts({"messages": [message]}) == [deep]


def test_without_ner_texts_are_split_only_at_whitespace(pattern_detector: Detector) -> None:
    """spaCy's rule-based tokenizer is quadratic in a run of punctuation (10 KB of brackets: 18 s)."""
    assert [t.text for t in whitespace_pipeline().make_doc("[[[x]]] mail:alice@example.com,")] == [
        "[[[x]]]",
        "mail:alice@example.com,",
    ]
    text = "[" * 5000 + " mail:alice@example.com, " + "]" * 5000
    (finding,) = pattern_detector.analyze(text)
    assert text[finding.start : finding.end] == "alice@example.com"


def test_vault_keeps_at_most_its_conversations_least_recently_used_first() -> None:
    vault = Vault(ttl=3600, max_conversations=2)
    first = vault.conversation("a")
    vault.conversation("b")
    assert vault.conversation("a") is first  # "a" is now the most recently used
    vault.conversation("c")
    assert len(vault) == 2 and vault.conversation("a") is first and vault.evicted == 1


def test_vault_keeps_at_most_its_bytes_and_counts_growth() -> None:
    vault = Vault(ttl=3600, max_bytes=10_000)
    for n in range(50):
        conversation = vault.conversation(f"call-{n}")
        for i in range(3):
            conversation.placeholder("EMAIL_ADDRESS", f"user{i}.{n}@example.com")
    assert vault.bytes <= 10_000 and 1 < len(vault) < 50
    assert vault.bytes == sum(c.size for c in vault._conversations.values())
