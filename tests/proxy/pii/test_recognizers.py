from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from presidio_analyzer import Pattern, PatternRecognizer

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
