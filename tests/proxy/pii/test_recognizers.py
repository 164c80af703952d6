from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from presidio_analyzer import Pattern, PatternRecognizer

from bastion.proxy.pii.detector import Detector
from bastion.proxy.pii.recognizers import GATES, Gated

LABELLED = json.loads((Path(__file__).resolve().parents[2] / "data" / "pii_labelled.json").read_text())
VALUES = [(entity, value) for case in LABELLED for entity, value in case["entities"] if entity in GATES]


@pytest.mark.parametrize(("entity", "value"), VALUES)
def test_every_labelled_value_passes_its_gate(entity: str, value: str) -> None:
    assert re.search(GATES[entity], value)


def test_a_gated_recognizer_skips_texts_without_what_it_needs() -> None:
    calls: list[str] = []

    class Counting(PatternRecognizer):
        def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):  # type: ignore[no-untyped-def]
            calls.append(text)
            return super().analyze(text, entities, nlp_artifacts, regex_flags)

    inner = Counting(supported_entity="EMAIL_ADDRESS", patterns=[Pattern("at", r"\S+@\S+", 0.9)])
    gated = Gated(inner, GATES["EMAIL_ADDRESS"])
    assert gated.analyze("no address here", ["EMAIL_ADDRESS"], None) == []  # type: ignore[arg-type]
    (found,) = gated.analyze("write to a@b.example", ["EMAIL_ADDRESS"], None)  # type: ignore[arg-type]
    assert calls == ["write to a@b.example"] and (found.start, found.end) == (9, 20)
    assert found.recognition_metadata["recognizer_identifier"] == gated.id


AZURE = "DefaultEndpointsProtocol=https;AccountName=bastiondata;AccountKey=" + "Zm9vYmFy" * 5 + "=="
FOUND = [
    # Phone numbers in the formats the regex recognizer missed (issue 16), through phonenumbers.
    ("PHONE_NUMBER", "Bel me op 06-82237745 na vijven.", "06-82237745"),
    ("PHONE_NUMBER", "My mobile is 07700 900123, call after six.", "07700 900123"),
    ("PHONE_NUMBER", "The office line is 020 7946 0958.", "020 7946 0958"),
    ("PHONE_NUMBER", "Ruf mich an: 030 12345678", "030 12345678"),
    ("PHONE_NUMBER", "Desk phone 415-555-0134x12 (ask for Sam).", "415-555-0134x12"),
    ("PHONE_NUMBER", "Appelez le +33 1 42 68 53 00 demain.", "+33 1 42 68 53 00"),
    ("CREDIT_CARD", "Charge the Mastercard 2223 0031 2200 3222 please.", "2223 0031 2200 3222"),
    ("CREDIT_CARD", "The 19-digit card 4000000000000000006 was declined.", "4000000000000000006"),
    ("AGE", "The patient is 42 years old and lives alone.", "42 years old"),
    ("DATE_OF_BIRTH", "She was born on 14 March 1987 in Leeds.", "14 March 1987"),
    ("DATE_OF_BIRTH", "DOB: 1987-03-14, blood type A.", "1987-03-14"),
    ("UK_POSTCODE", "Send it to 10 Downing Street, London SW1A 2AA.", "SW1A 2AA"),
    ("US_ZIP_CODE", "Ship to 500 Main St, Springfield, IL 62701-1234.", "62701-1234"),
    ("POSTCODE", "Hauptstraße 5, 10115 Berlin", "10115"),
    ("POSTCODE", "Jan de Vries\nOudegracht 12\n3511 AB Utrecht", "3511 AB"),
    ("DATE_OF_BIRTH", "Call Ana back; her date of birth is 23/11/1990.", "23/11/1990"),
    (
        "GOOGLE_API_KEY",
        "key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY in the maps call",
        "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    ),
    ("STRIPE_KEY", "export STRIPE=sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("AZURE_CONNECTION_STRING", f"conn: {AZURE};EndpointSuffix=core.windows.net", AZURE),
    ("CREDENTIAL", 'db = connect(user="app", password="hunter2-staging")', "hunter2-staging"),
    ("CREDENTIAL", "API_KEY: 9f8e7d6c5b4a39281706", "9f8e7d6c5b4a39281706"),
]


@pytest.mark.parametrize(("entity", "text", "value"), FOUND)
def test_presidio_and_bastion_recognizers_find_each_value(
    pattern_detector: Detector, entity: str, text: str, value: str
) -> None:
    found = {text[f.start : f.end] for f in pattern_detector.analyze(text) if f.entity == entity and f.score >= 0.5}
    assert value in found


@pytest.mark.parametrize(
    "text",
    [
        "Build 20240305 passed; 1234 tests ran in 56.7 s.",
        "Set the password field to required in the signup form.",
        "The invoice total is 4000 EUR, due on 2024-03-05.",
        "Use the api_key parameter from the settings page.",
        "SELECT id FROM jobs WHERE queue = 'Kafka' LIMIT 67488;",
        "Retries: 3, 5000 Requests per second at peak.",
    ],
)
def test_ordinary_text_holds_no_phone_card_or_credential(pattern_detector: Detector, text: str) -> None:
    kinds = {"PHONE_NUMBER", "CREDIT_CARD", "CREDENTIAL", "AGE", "DATE_OF_BIRTH", "US_ZIP_CODE", "POSTCODE"}
    assert [f for f in pattern_detector.analyze(text) if f.entity in kinds and f.score >= 0.5] == []
