from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.proxy.pii.detector import Detector
from bastion.proxy.pii.ner import WindowedSpacyNlpEngine, could_hold_a_name, name_windows, sentences

LABELLED = json.loads((Path(__file__).resolve().parents[2] / "data" / "pii_labelled.json").read_text())
TEXT = (
    "Please restart the worker pool. Olivia Brown will take over from Monday; she lives in Lisbon.\n"
    "It ran out of memory twice. Could you convert this CSV to a table? I think so."
)


def engine(detector: Detector) -> WindowedSpacyNlpEngine:
    nlp_engine = detector.engine.nlp_engine
    assert isinstance(nlp_engine, WindowedSpacyNlpEngine)
    return nlp_engine


def test_sentences_split_after_punctuation_and_at_line_breaks() -> None:
    text = "One. Two? Three\nFour: five"
    assert [text[s:e] for s, e in sentences(text)] == ["One.", "Two?", "Three", "Four:", "five"]


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("The build is green.", False),
        ("Could you check it? I think it failed.", False),
        ("my name is maria", False),
        ("- The report is late.", False),
        ("2. Our numbers look better.", False),
        ("Ask Maria about it.", True),
        ("Maria approved it.", True),
        ("We flew to Madrid.", True),
    ],
)
def test_could_hold_a_name(sentence: str, expected: bool) -> None:
    assert could_hold_a_name(sentence) is expected


def test_windows_join_consecutive_candidate_sentences() -> None:
    assert [TEXT[s:e] for s, e in name_windows(TEXT)] == [
        "Olivia Brown will take over from Monday; she lives in Lisbon.",
        "Could you convert this CSV to a table?",
    ]
    assert name_windows("The build is green. Could you tag it?") == []


def test_windowed_run_finds_what_a_whole_text_run_finds(detector: Detector) -> None:
    nlp = engine(detector).nlp["en"]  # type: ignore[index]
    whole = {(e.start_char, e.end_char) for e in nlp(TEXT).ents if e.label_ in ("PERSON", "GPE")}
    windowed = {(e.start_char, e.end_char) for e in engine(detector).process_text(TEXT, "en").entities}
    assert whole <= windowed
    assert {TEXT[s:e] for s, e in whole} == {"Olivia Brown", "Lisbon"}


@pytest.mark.parametrize("case", [c for c in LABELLED if any(e == "PERSON" for e, _ in c["entities"])])
def test_labelled_names_are_found(detector: Detector, case: dict[str, object]) -> None:
    text = str(case["text"])
    found = [text[f.start : f.end] for f in detector.analyze(text) if f.entity == "PERSON"]
    for entity, value in case["entities"]:  # type: ignore[attr-defined]
        if entity == "PERSON":
            assert any(value in f or f in value for f in found), (value, found)
