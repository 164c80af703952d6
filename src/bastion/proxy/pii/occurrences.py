"""Every occurrence of a value once it is found: the analyzer finds a value where its context gives
it away ("My name is Christiane de Vaan"), and the same value elsewhere ("everyone calls me
Christiane", a later message) must not go out raw.

``values`` collects what was found in a request's texts (and what the conversation has pseudonymized
before); ``extend`` adds a finding for every other whole-word occurrence of those values in a text,
and of the parts of a person's name (a first or last name alone).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from spacy.lang.en.stop_words import STOP_WORDS

from bastion.proxy.pii.config import EntityRule
from bastion.proxy.pii.detector import Finding

NAME_PART = re.compile(r"[^\W\d_][\w'’-]*")
MIN_PART = 3  # characters: initials and particles ("de", "van") are not looked for alone
MIN_VALUE = 3

Value = tuple[str, str, float]  # entity, value, score


def values(found: Mapping[str, Iterable[Finding]], rules: Mapping[str, EntityRule]) -> set[Value]:
    """The values of ``found`` (text -> findings) that ``rules`` act on, and the parts of names."""
    out: set[Value] = set()
    for text, findings in found.items():
        for f in findings:
            rule = rules.get(f.entity)
            if rule is None or f.score < rule.threshold:
                continue
            out |= set(expand(f.entity, text[f.start : f.end], f.score))
    return out


def expand(entity: str, value: str, score: float) -> list[Value]:
    """The value itself and, for a person's name of several words, each capitalised part."""
    out = [(entity, value, score)] if len(value.strip()) >= MIN_VALUE else []
    if entity == "PERSON":
        parts = [p for p in NAME_PART.findall(value) if len(p) >= MIN_PART and p[0].isupper()]
        if len(parts) > 1:
            out += [(entity, p, score) for p in parts if p.lower() not in STOP_WORDS]
    return out


def extend(text: str, findings: tuple[Finding, ...], known: Iterable[Value]) -> tuple[Finding, ...]:
    """``findings`` plus a finding for each whole-word occurrence in ``text`` of a known value that no
    finding covers yet."""
    added: list[Finding] = []
    covered = [(f.start, f.end) for f in findings]
    for entity, value, score in sorted(known, key=lambda v: -len(v[1])):  # longest first
        if value not in text:
            continue
        for match in re.finditer(rf"(?<!\w){re.escape(value)}(?!\w)", text):
            start, end = match.span()
            if any(s < end and start < e for s, e in covered):
                continue
            added.append(Finding(entity, start, end, score))
            covered.append((start, end))
    if not added:
        return findings
    return tuple(sorted((*findings, *added), key=lambda f: f.start))
