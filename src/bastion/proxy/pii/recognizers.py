"""Bastion's own Presidio recognizers: secrets as their own entity types, the types Presidio has no
recognizer for (age, date of birth), Presidio's own recognizers configured for agents' text (phones
over a list of regions, cards of every length Luhn allows), and gates in front of the costly ones.

A gate is a cheap search for something every match must contain (a phone number has six digits,
an email an ``@``): a text without it skips the recognizer, which findings cannot tell apart.
Presidio's PhoneRecognizer runs python-phonenumbers once per region over the text, so its gate
matters most.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, PhoneRecognizer, UkPostcodeRecognizer

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
    "GOOGLE_API_KEY": [("google api key", r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])", 0.95)],
    "STRIPE_KEY": [("stripe key", r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,247}\b", 0.95)],
    "AZURE_CONNECTION_STRING": [
        (
            "azure storage connection string",
            r"DefaultEndpointsProtocol=https?;AccountName=[^;\s]+;AccountKey=[A-Za-z0-9+/=]{20,}",
            0.95,
        ),
        ("azure shared access key", r"\b(?:SharedAccessKey|AccountKey)=[A-Za-z0-9+/=]{20,}", 0.9),
    ],
    # password = "...", api_key: ..., "client_secret": "...": the value (Presidio's regex module
    # allows the variable-length look-behind), at least 6 characters.
    "CREDENTIAL": [
        (
            "credential assignment",
            r"(?i)(?<=\b(?:\w*[_-])?(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)"
            r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]{6,}",
            0.8,
        )
    ],
    "PRIVATE_KEY": [
        (
            "pem private key",
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\Z)",
            1.0,
        )
    ],
}

# Presidio's phone recognizer, over the regions agents' users most often write numbers for (a
# number with its country code is found whatever the region list; Canada shares +1 with the US).
# Each region costs about 0.1 ms per piece of text that looks like a number.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "NL", "ES", "IT", "IE", "IN", "AU", "BR", "CH")
# Presidio's card pattern stops at 4-series to 6-series and 17 digits; Luhn (its validation) decides.
CARD_PATTERN = r"\b[1-6]\d{3}(?:[ -]?\d){9,15}\b"

US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|"
    "OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC"
)
# Types Presidio has no recognizer for: entity type -> (pattern name, regex, score)
OWN_PATTERNS: dict[str, list[tuple[str, str, float]]] = {
    "AGE": [
        ("n years old", r"(?i)\b\d{1,3}[ -](?:years?|yrs?)[ -]old\b", 0.8),
        ("aged n", r"(?i)\b(?:aged|age[: ]+(?:is\s+)?)\s*\d{1,3}\b", 0.7),
    ],
    "DATE_OF_BIRTH": [
        (
            "date after born, birthday, DOB",
            r"(?i)(?<=\b(?:born(?:\s+on)?|birthday|d\.?o\.?b\.?|date\s+of\s+birth)(?:\s+(?:is|was|on))?\s*[:\-]?\s*)"
            r"(?:\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{1,2}(?:st|nd|rd|th)?\s+[A-Za-z]{3,9}\.?,?\s+\d{4}"
            r"|[A-Za-z]{3,9}\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4})",
            0.85,
        )
    ],
    "US_ZIP_CODE": [("state and zip", rf"(?<=\b(?:{US_STATES}),?\s)\d{{5}}(?:-\d{{4}})?\b", 0.6)],
    # Continental postcodes where addresses put them: after a comma or line break, before a town's
    # capitalised words that end the line or clause ("Hauptstr. 5, 10115 Berlin", "3511 AB Utrecht").
    # (Presidio's regex module: \p{Lu} is an upper-case letter.)
    "POSTCODE": [
        (
            "postcode before a town",
            r"(?<=(?:,|\n)[ \t]*)(?:[A-Z]{1,2}-)?\d{4,5}(?:[ ]?[A-Z]{2})?"
            r"(?=[ \t]+\p{Lu}[\w'’-]+(?:[ -]\p{Lu}[\w'’-]+)*[ \t]*(?:[.,;)\n]|$))",
            0.6,
        )
    ],
}

# entity type -> what every match of its recognizer contains (kept next to the patterns it mirrors)
GATES = {
    "EMAIL_ADDRESS": r"@",
    # IPv4 has digit.digit; IPv6 a hex digit before a colon, or "::".
    "IP_ADDRESS": r"\d\.\d|[0-9A-Fa-f]:|::",
    "CREDIT_CARD": r"\d{4}",
    "DATE_OF_BIRTH": r"(?i)born|birth|d\.?o\.?b",
    "AGE": r"(?i)\bage|years? old|yrs? old",
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


class Windowed(Gated):
    """``inner``, run only on the pieces of a text where ``gate`` finds something (a few characters
    around each, merged where they touch), with its findings placed back on the whole text."""

    MARGIN = 3

    def __init__(self, inner: EntityRecognizer, gate: str, keep: Callable[[str], bool] = lambda piece: True) -> None:
        super().__init__(inner, gate)
        self.keep = keep

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts) -> list[RecognizerResult]:
        windows: list[tuple[int, int]] = []
        for match in self.gate.finditer(text):
            if not self.keep(match.group()):
                continue
            start, end = max(match.start() - self.MARGIN, 0), min(match.end() + self.MARGIN, len(text))
            if windows and start <= windows[-1][1]:
                windows[-1] = (windows[-1][0], end)
            else:
                windows.append((start, end))
        results = []
        for start, end in windows:
            for result in self.inner.analyze(text[start:end], entities, nlp_artifacts):
                result.start, result.end = result.start + start, result.end + start
                result.recognition_metadata[RecognizerResult.RECOGNIZER_IDENTIFIER_KEY] = self.id
                results.append(result)
        return results


# entity type -> the pieces of text its recognizer needs to see (a phone number and its edges)
WINDOWS = {"PHONE_NUMBER": r"[+(]?\d[\d ().\-/x]{4,30}\d(?:\s*(?:ext\.?|x)\s*\d{1,5})?"}


def phone_digits(piece: str) -> bool:
    """Whether a piece of text has as many digits as a phone number can (7 to 15, E.164), before any
    extension: a card number or a long id does not go through phonenumbers' region-by-region match."""
    number = piece.split("x", 1)[0].split("ext", 1)[0]
    digits = sum(c.isdigit() for c in number)
    return 7 <= digits <= 15


def gated(entity: str, recognizer: EntityRecognizer) -> EntityRecognizer:
    if entity == "PHONE_NUMBER":
        return Windowed(recognizer, WINDOWS[entity], phone_digits)
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


class ScoredPhoneRecognizer(PhoneRecognizer):
    """Presidio scores a number 0.4 and lets context words ("phone", "call") raise it; Bastion runs
    no context enhancement, so a number scores what one in context would."""

    SCORE = 0.75


def phone_recognizer() -> EntityRecognizer:
    return ScoredPhoneRecognizer(supported_regions=PHONE_REGIONS, name="BastionPhoneRecognizer")


def card_recognizer() -> EntityRecognizer:
    return CreditCardRecognizer(patterns=[Pattern("card number, 13 to 19 digits", CARD_PATTERN, 0.3)])


def uk_postcode_recognizer() -> EntityRecognizer:
    """Presidio's pattern, scored as a postcode next to "postcode" would be (no context enhancement)."""
    pattern = UkPostcodeRecognizer.PATTERNS[0]
    return UkPostcodeRecognizer(patterns=[Pattern(pattern.name, pattern.regex, 0.6)])


def own_recognizer(entity: str) -> EntityRecognizer:
    return PatternRecognizer(
        supported_entity=entity,
        name=f"Bastion{entity.title().replace('_', '')}Recognizer",
        patterns=[Pattern(name, regex, score) for name, regex, score in OWN_PATTERNS[entity]],
        global_regex_flags=0,
    )
