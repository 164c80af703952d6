"""Bastion's own Presidio recognizers: secrets as their own entity types, and a fast phone pattern.

Presidio's PhoneRecognizer (python-phonenumbers over every substring) costs about 20 ms per KB;
the pattern below covers the usual North American and international spellings in microseconds.
"""

from __future__ import annotations

from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer

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
