"""Applying the configured actions to a text's findings, and reversible pseudonyms.

Pseudonyms are per conversation: the same value gets the same placeholder (``<EMAIL_ADDRESS_1>``)
every turn, and the answer gets the original back. The mapping lives only in memory and expires
after a TTL without use; it is never stored or logged.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field

from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

from bastion.proxy.pii.config import Action, EntityRule
from bastion.proxy.pii.detector import Finding

PLACEHOLDER = re.compile(r"<([A-Z][A-Z_]*?)_(\d+)>")
MAX_PLACEHOLDER = 40  # characters: a longer "<..." is not one of ours


def mask(value: str) -> str:
    """All but the last four characters (at most a quarter of the value) become '*'."""
    keep = min(4, len(value) // 4)
    return "*" * (len(value) - keep) + value[len(value) - keep :]


class Conversation:
    """One conversation's pseudonyms, in both directions. ``size`` estimates the bytes it holds."""

    BASE_BYTES = 1024  # the object, its dicts and lock
    ENTRY_BYTES = 400  # per value: two dict entries, the key tuple, two strings' overhead

    def __init__(self, key: str = "", grew: Callable[[Conversation, int], None] | None = None) -> None:
        self.id, self.key = uuid.uuid4().hex, key
        self._by_value: dict[tuple[str, str], str] = {}
        self._by_placeholder: dict[str, str] = {}
        self._numbers: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.used = time.monotonic()
        self.size = self.BASE_BYTES
        self._grew = grew

    def placeholder(self, entity: str, value: str) -> str:
        with self._lock:
            found = self._by_value.get((entity, value))
            if found is None:
                self._numbers[entity] += 1
                found = f"<{entity}_{self._numbers[entity]}>"
                self._by_value[(entity, value)] = found
                self._by_placeholder[found] = value
                added = self.ENTRY_BYTES + 2 * len(value.encode()) + 2 * len(found) + len(entity)
                self.size += added
                if self._grew is not None:
                    self._grew(self, added)
            return found

    def values(self) -> list[tuple[str, str]]:
        """(entity, value) of every value pseudonymized in this conversation so far."""
        with self._lock:
            return list(self._by_value)

    def restore(self, text: str, json_string: bool = False) -> str:
        """``text`` with every placeholder of this conversation replaced by its value."""
        if "<" not in text or not self._by_placeholder:
            return text

        def original(match: re.Match[str]) -> str:
            value = self._by_placeholder.get(match.group(0))
            if value is None:
                return match.group(0)
            return json.dumps(value)[1:-1] if json_string else value

        return PLACEHOLDER.sub(original, text)


class Vault:
    """Conversations by key, forgotten ``ttl`` seconds after their last use, and least recently used
    first when there are more than ``max_conversations`` or they hold more than ``max_bytes``.

    A forgotten conversation loses its pseudonyms: placeholders the model still uses in a later
    answer are no longer restored (the agent sees ``<EMAIL_ADDRESS_1>``), and its next turn starts
    a new mapping (the same value may get another number). Nothing raw leaks either way."""

    def __init__(self, ttl: float, max_conversations: int = 10_000, max_bytes: int = 64 << 20) -> None:
        self.ttl, self.max_conversations, self.max_bytes = ttl, max_conversations, max_bytes
        self._conversations: OrderedDict[str, Conversation] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()
        self.bytes = 0
        self.evicted = 0

    def conversation(self, key: str) -> Conversation:
        now = time.monotonic()
        with self._lock:
            while self._conversations:
                oldest = next(iter(self._conversations.values()))
                if now - oldest.used <= self.ttl:
                    break
                self._forget_oldest()
            found = self._conversations.get(key)
            if found is None:
                found = self._conversations[key] = Conversation(key, self._grew)
                self.bytes += found.size
            self._conversations.move_to_end(key)
            found.used = now
            self._trim(keep=found)
            return found

    def _grew(self, conversation: Conversation, added: int) -> None:
        with self._lock:
            if self._conversations.get(conversation.key) is conversation:  # not one already forgotten
                self.bytes += added
                self._trim(keep=conversation)

    def _trim(self, keep: Conversation | None = None) -> None:
        while len(self._conversations) > 1 and (
            len(self._conversations) > self.max_conversations or self.bytes > self.max_bytes
        ):
            if next(iter(self._conversations.values())) is keep:
                break
            self._forget_oldest()
            self.evicted += 1

    def _forget_oldest(self) -> None:
        _, conversation = self._conversations.popitem(last=False)
        self.bytes -= conversation.size

    def __len__(self) -> int:
        return len(self._conversations)


@dataclass
class Redaction:
    text: str
    counts: Counter[str] = field(default_factory=Counter)
    blocked: set[str] = field(default_factory=set)


class Redactor:
    """Applies one direction's actions to a text's findings with Presidio's anonymizer."""

    def __init__(self, salt: str | None = None, memo_size: int = 4096) -> None:
        self.salt = salt
        self.anonymizer = AnonymizerEngine()  # type: ignore[no-untyped-call]
        # (text, findings, direction, rules, conversation) -> result: a resent message is not redone.
        self.memo_size = memo_size
        self._memo: OrderedDict[Hashable, Redaction] = OrderedDict()
        self._lock = threading.Lock()

    def _operator(self, entity: str, action: Action, conversation: Conversation | None) -> OperatorConfig:
        if action is Action.MASK:
            return OperatorConfig("custom", {"lambda": mask})
        if action is Action.HASH:
            return OperatorConfig("hash", {"hash_type": "sha256", "salt": self.salt or ""})
        if action is Action.PSEUDONYMIZE and conversation is not None:
            keeper = conversation
            return OperatorConfig("custom", {"lambda": lambda value: keeper.placeholder(entity, value)})
        if action is Action.ALLOW:
            return OperatorConfig("keep")
        # redact, block, and pseudonymize without a conversation
        return OperatorConfig("replace", {"new_value": f"<{entity}>"})

    def apply(
        self,
        text: str,
        findings: tuple[Finding, ...],
        rules: Mapping[str, EntityRule],
        direction: str,
        conversation: Conversation | None = None,
        rules_key: Hashable | None = None,
    ) -> Redaction:
        """Redact ``text``; with ``rules_key`` (a hashable stand-in for ``rules``) results are remembered.

        The result is shared when remembered: callers read it and do not change it.
        """
        if rules_key is None or not self.memo_size:
            return self._apply(text, findings, rules, direction, conversation)
        key = (text, findings, direction, rules_key, conversation.id if conversation is not None else None)
        with self._lock:
            found = self._memo.get(key)
            if found is not None:
                self._memo.move_to_end(key)
                return found
        result = self._apply(text, findings, rules, direction, conversation)
        with self._lock:
            self._memo[key] = result
            while len(self._memo) > self.memo_size:
                self._memo.popitem(last=False)
        return result

    def _apply(
        self,
        text: str,
        findings: tuple[Finding, ...],
        rules: Mapping[str, EntityRule],
        direction: str,
        conversation: Conversation | None,
    ) -> Redaction:
        kept = [f for f in findings if f.entity in rules and f.score >= rules[f.entity].threshold]
        result = Redaction(text, Counter(f.entity for f in _without_overlaps(kept)))
        if not kept:
            return result
        actions = {f.entity: rules[f.entity].action(direction) for f in kept}
        result.blocked = {e for e, a in actions.items() if a is Action.BLOCK}
        changing = [f for f in kept if actions[f.entity] is not Action.ALLOW]
        if not changing:
            return result
        operators = {e: self._operator(e, a, conversation) for e, a in actions.items()}
        analyzer_results = [RecognizerResult(f.entity, f.start, f.end, f.score) for f in changing]
        result.text = self.anonymizer.anonymize(text, analyzer_results, operators).text  # type: ignore[arg-type]
        return result


def _without_overlaps(findings: list[Finding]) -> list[Finding]:
    """For counting: of findings that overlap, the highest-scoring (then longest) one."""
    ranked = sorted(findings, key=lambda f: (-f.score, f.start - f.end))
    chosen: list[Finding] = []
    for f in ranked:
        if all(f.end <= c.start or f.start >= c.end for c in chosen):
            chosen.append(f)
    return chosen


def conversation_key(agent: str, header: str | None, first_user_text: str) -> str:
    """A conversation: the agent and its ``x-bastion-conversation`` header, or the first user message."""
    basis = f"header:{header}" if header else f"first:{first_user_text}"
    return hashlib.sha256(f"{agent}\0{basis}".encode()).hexdigest()
