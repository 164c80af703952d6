"""Bastion's own Presidio recognizers: secrets as their own entity types, a fast phone pattern, and
gates in front of the costly patterns.

Presidio's PhoneRecognizer (python-phonenumbers over every substring) costs about 20 ms per KB;
the pattern below covers the usual North American and international spellings in microseconds.
A gate is a cheap search for something every match must contain (an email has an ``@``): a text
without it skips the recognizer's patterns, which findings cannot tell apart.
"""

from __future__ import annotations

import re

from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

# entity type -> (pattern name, regex, score)
SECRET_PATTERNS: dict[str, list[tuple[str, str, float]]] = {
    "AWS_ACCESS_KEY": [("aws access key id", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b", 0.95)],
    "GITHUB_TOKEN": [
        ("github token", r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b", 0.95),
        ("github fine-grained token", r"\bgithub_pat_[A-Za-z0-9_]{60,255}\b", 0.95),
    ],
    "SLACK_TOKEN": [("slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,250}\b", 0.95)],
    "OPENAI_API_KEY": [("openai-style key", r"\bsk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{20,200}\b", 0.9)],
    "JWT": [("json web token", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", 0.95)],
    "PRIVATE_KEY": [
        (
            "pem private key",
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\Z)",
            1.0,
        )
    ],
}

PHONE_PATTERNS = [
    # +1 (415) 555-0134, 415-555-0134, (415) 555 0134, 415.555.0134
    ("north american", r"(?<![\w+])(?:\+?1[ .-]?)?\(?[2-9]\d{2}\)?[ .-]?\d{3}[ .-]\d{4}\b", 0.7),
    # +44 20 7946 0958, +49 30 1234567, +33 1 23 45 67 89
    ("international", r"(?<![\w+])\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,5}\b", 0.7),
]

# entity type -> what every match of its recognizer contains (kept next to the patterns it mirrors)
GATES = {
    "EMAIL_ADDRESS": r"@",
    # IPv4 has digit.digit; IPv6 a hex digit before a colon, or "::".
    "IP_ADDRESS": r"\d\.\d|[0-9A-Fa-f]:|::",
    # PHONE_PATTERNS: three digits, a separator and four digits; or "+" and a digit.
    "PHONE_NUMBER": r"\d{3}[ .-]\d{4}|\+[1-9]",
}


class Gated(EntityRecognizer):
    """``inner``, run only on texts where ``gate`` finds something."""

    def __init__(self, inner: EntityRecognizer, gate: str) -> None:
        self.inner, self.gate = inner, re.compile(gate)
        super().__init__(inner.supported_entities, supported_language=inner.supported_language, context=inner.context)

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts) -> list[RecognizerResult]:
        if self.gate.search(text) is None:
            return []
        results = list(self.inner.analyze(text, entities, nlp_artifacts))
        for result in results:  # Presidio groups results by the id of the recognizer it called
            result.recognition_metadata[RecognizerResult.RECOGNIZER_IDENTIFIER_KEY] = self.id
        return results


def gated(entity: str, recognizer: EntityRecognizer) -> EntityRecognizer:
    gate = GATES.get(entity)
    return recognizer if gate is None else Gated(recognizer, gate)


def secret_recognizers() -> list[EntityRecognizer]:
    return [
        PatternRecognizer(
            supported_entity=entity,
            name=f"Bastion{entity.title().replace('_', '')}Recognizer",
            patterns=[Pattern(name, regex, score) for name, regex, score in patterns],
            global_regex_flags=0,  # case matters in key prefixes
        )
        for entity, patterns in SECRET_PATTERNS.items()
    ]


def phone_recognizer() -> EntityRecognizer:
    return PatternRecognizer(
        supported_entity="PHONE_NUMBER",
        name="BastionPhoneRecognizer",
        patterns=[Pattern(name, regex, score) for name, regex, score in PHONE_PATTERNS],
        context=["phone", "call", "mobile", "tel", "telephone", "cell", "number"],
    )
