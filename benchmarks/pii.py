"""PII redaction: cost per request, memory, detection quality and the streaming first-token delay.

Cost cases (p50 goals from the issue): (a) a fresh 1 KB prompt with NER (<= 10 ms), (b) the same
with pattern recognizers only (<= 2 ms), (c) turn 20 of a conversation whose earlier messages are
cached (<= 2 ms), next to turn 20 without the cache. Each request is the whole proxy-side work:
find the texts in the body, analyze, apply the actions (pseudonymize/redact/mask), rebuild the body.

Quality: recall and false-positive rate per entity type over tests/data/pii_labelled.json.

Streaming: how many characters and events of a streamed answer the hold-back buffer delays before
the first text reaches the agent, and the CPU cost per event.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from collections import Counter
from typing import Any

from harness import ROOT, percentile, print_table

from bastion.proxy.formats import openai_chat
from bastion.proxy.pii import bodies
from bastion.proxy.pii.config import Action, EntityRule
from bastion.proxy.pii.detector import Detector
from bastion.proxy.pii.redactor import Conversation, Redactor
from bastion.proxy.pii.streams import StreamRedactor

SAMPLES = 200
STRUCTURED = [
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS",
    "AWS_ACCESS_KEY", "GITHUB_TOKEN", "SLACK_TOKEN", "OPENAI_API_KEY", "JWT", "PRIVATE_KEY",
]  # fmt: skip
NER = ["PERSON", "LOCATION"]
RULES = {
    e: EntityRule(Action.PSEUDONYMIZE if e in ("EMAIL_ADDRESS", "PERSON") else Action.REDACT, Action.ALLOW)
    for e in STRUCTURED + NER
}
RULES_KEY = frozenset(RULES.items())
SENTENCES = [
    "Hello, my name is Maria Gonzalez and I live in Springfield.",
    "Please send the invoice to maria.gonzalez@example.org by Friday.",
    "You can call me on (415) 555-0134 in the afternoon.",
    "My card is 4111 1111 1111 1111 and it expires next year.",
    "The quarterly numbers look better than last year's, mostly thanks to the new pricing.",
    "Could you summarise the attached contract in plain words for the team?",
    "Our IBAN is GB82 WEST 1234 5698 7654 32 for the transfer.",
    "The deploy failed again on the staging cluster; please check the logs.",
]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def prompt(seed: int, size: int = 1024) -> str:
    rng = random.Random(seed)
    text = ""
    while len(text) < size:
        text += rng.choice(SENTENCES) + " "
    return f"[{seed}] " + text[: size - 8]


CONVERSATIONS: dict[str, Conversation] = {}


def redact_request(detector: Detector, redactor: Redactor, body: Any) -> Any:
    # As the proxy does: one conversation per first user message.
    conversation = CONVERSATIONS.setdefault(openai_chat.FORMAT.first_user_text(body), Conversation())
    found = {t: detector.analyze(t) for t in dict.fromkeys(bodies.texts(body))}
    return bodies.walk(body, lambda t: redactor.apply(t, found[t], RULES, "request", conversation, RULES_KEY).text)


def timed(run: Any, samples: int = SAMPLES) -> list[float]:
    out = []
    for i in range(samples):
        start = time.perf_counter()
        run(i)
        out.append((time.perf_counter() - start) * 1000)
    return out


def conversation_body(turns: int, seed: int) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    for t in range(turns):
        user = prompt(seed * 1000 + t, 300)
        messages.append({"role": "user", "content": user})
        if t < turns - 1:
            messages.append({"role": "assistant", "content": "Scripted reply to: " + user})
    return {"model": "m", "messages": messages}


def costs() -> None:
    before = rss_mb()
    ner = Detector(STRUCTURED + NER, cache_size=4096)
    after_ner = rss_mb()
    patterns = Detector(STRUCTURED, cache_size=4096)
    uncached = Detector(STRUCTURED + NER, cache_size=0)
    redactor = Redactor()
    for d in (ner, patterns):  # warm-up: lazy initialisation in spaCy and the recognizers
        redact_request(d, redactor, {"messages": [{"role": "user", "content": prompt(-1)}]})
    loaded = rss_mb()

    def fresh(detector: Detector) -> Any:
        return lambda i: redact_request(detector, redactor, {"messages": [{"role": "user", "content": prompt(i)}]})

    rows = []
    for name, run, goal in (
        ("(a) fresh 1 KB prompt, NER + patterns", fresh(ner), 10.0),
        ("(b) fresh 1 KB prompt, patterns only", fresh(patterns), 2.0),
    ):
        ms = timed(run)
        rows.append([name, statistics.median(ms), percentile(ms, 95), goal])

    # (c) turn 20: the previous 19 turns were analyzed when they were sent (cached); the new
    # 300-byte user message is not.
    for label, detector in (("NER + patterns", ner), ("patterns only", patterns)):
        bodies_20 = [conversation_body(20, 500 + i) for i in range(SAMPLES // 4)]
        for body in bodies_20:  # turn 19 was sent before: its messages were redacted then
            redact_request(detector, redactor, {"model": "m", "messages": body["messages"][:-1]})
        ms = timed(lambda i, b=bodies_20, d=detector: redact_request(d, redactor, b[i]), len(bodies_20))
        rows.append([f"(c) turn 20 of a conversation, {label}", statistics.median(ms), percentile(ms, 95), 2.0])
    turn1 = timed(lambda i: redact_request(uncached, redactor, conversation_body(1, 900 + i)), 20)
    turn20 = timed(lambda i: redact_request(uncached, redactor, conversation_body(20, 900 + i)), 10)
    rows.append(["turn 1, NER + patterns, no cache", statistics.median(turn1), percentile(turn1, 95), "-"])
    rows.append(["turn 20, NER + patterns, no cache", statistics.median(turn20), percentile(turn20, 95), "-"])
    print("\nPII cost per request (ms)")
    print_table(["case", "p50 ms", "p95 ms", "goal p50 ms"], rows)
    for i in range(4096):
        ner.analyze(prompt(10_000 + i, 300))
    full = rss_mb()
    print("\nMemory (RSS, MB)")
    print_table(
        ["stage", "RSS MB"],
        [
            ["before loading Presidio/spaCy", before],
            ["NER detector loaded", after_ner],
            ["both detectors, warmed up", loaded],
            ["after filling the NER cache (4096 texts of 300 B)", full],
        ],
    )


def quality() -> None:
    cases = json.loads((ROOT / "tests" / "data" / "pii_labelled.json").read_text())
    detector = Detector(STRUCTURED + NER, cache_size=0)
    expected, caught, fp_sentences, negatives = Counter[str](), Counter[str](), Counter[str](), Counter[str]()
    types = STRUCTURED + NER
    for case in cases:
        text = case["text"]
        found = [(f.entity, f.start, f.end) for f in detector.analyze(text) if f.score >= 0.5]
        labelled = {e for e, _ in case["entities"]}
        spans = []
        for entity, value in case["entities"]:
            start = text.index(value)
            spans.append((entity, start, start + len(value)))
            expected[entity] += 1
            if any(e == entity and s < start + len(value) and start < end for e, s, end in found):
                caught[entity] += 1
        for entity in types:
            if entity in labelled:
                continue
            negatives[entity] += 1
            if any(e == entity for e, _, _ in found):
                fp_sentences[entity] += 1
    rows = [
        [
            entity,
            expected[entity],
            f"{caught[entity] / expected[entity]:.0%}" if expected[entity] else "-",
            f"{fp_sentences[entity]}/{negatives[entity]} ({fp_sentences[entity] / negatives[entity]:.1%})",
        ]
        for entity in types
    ]
    print(f"\nDetection quality over {len(cases)} labelled sentences (threshold 0.5)")
    print_table(["entity", "labelled", "recall", "false positives (sentences)"], rows)


def stream_delay() -> None:
    text = (
        "Sure. I have noted your details: the invoice goes to maria.gonzalez@example.org and we will call "
        "(415) 555-0134 if anything is missing. Anything else I can help with today?"
    )
    tokens = [text[i : i + 4] for i in range(0, len(text), 4)]  # about one token per 4 characters
    rows = []
    for label, detector, window in (
        ("restore only (no response analysis)", None, 0),
        ("patterns, hold-back 32", Detector(STRUCTURED), 32),
        ("NER + patterns, hold-back 32", Detector(STRUCTURED + NER, cache_size=0), 32),
        ("patterns, hold-back 16", Detector(STRUCTURED), 16),
    ):
        conversation = Conversation()
        redactor = Redactor()

        def process(
            t: str,
            json_string: bool,
            d: Detector | None = detector,
            r: Redactor = redactor,
            c: Conversation = conversation,
        ) -> str:
            if d is not None:
                t = r.apply(t, d.analyze(t), RULES, "response").text
            return c.restore(t, json_string)

        spans = None if detector is None else (lambda t, d=detector: [(f.start, f.end) for f in d.analyze(t)])
        stream = StreamRedactor(openai_chat.FORMAT, process, spans, window)
        first, cpu = None, []
        for n, token in enumerate(tokens, 1):
            event = {"choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}]}
            raw = f"data: {json.dumps(event)}\n\n".encode()
            start = time.perf_counter()
            out = b"".join(stream(raw))
            cpu.append((time.perf_counter() - start) * 1000)
            content = json.loads(out.split(b"data: ", 1)[1])["choices"][0]["delta"]["content"] if out else ""
            if content and first is None:
                first = n
        held = (first or len(tokens)) - 1  # tokens that arrived before the first text went out
        rows.append([label, held, f"{held / 50 * 1000:.0f}", statistics.median(cpu), max(cpu)])
    print("\nStreaming: first text the agent receives (chat completions, 4-character tokens)")
    print_table(
        ["mode", "tokens held before first text", "added delay at 50 tok/s (ms)", "CPU p50 ms/event", "CPU max ms"],
        rows,
    )


if __name__ == "__main__":
    costs()
    quality()
    stream_delay()
