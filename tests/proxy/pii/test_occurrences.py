from __future__ import annotations

from bastion.proxy.pii import occurrences
from bastion.proxy.pii.config import Action, EntityRule
from bastion.proxy.pii.detector import Detector, Finding
from bastion.proxy.pii.redactor import Conversation, Redactor

RULES = {e: EntityRule(Action.PSEUDONYMIZE, Action.ALLOW) for e in ("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER")}
TEXT = "My name is Christiane de Vaan but everyone calls me Christiane"


def test_a_first_name_alone_after_the_full_name_is_found() -> None:
    full = Finding("PERSON", 11, 29, 0.85)
    known = occurrences.values({TEXT: (full,)}, RULES)
    found = occurrences.extend(TEXT, (full,), known)
    assert [TEXT[f.start : f.end] for f in found] == ["Christiane de Vaan", "Christiane"]


def test_particles_and_words_inside_other_words_are_left_alone() -> None:
    known = set(occurrences.expand("PERSON", "Anna de Vries", 0.9))
    text = "de Vries wrote to Annabel; Anna replied, de facto."
    found = occurrences.extend(text, (), known)
    assert [text[f.start : f.end] for f in found] == ["Vries", "Anna"]


def test_every_occurrence_and_later_messages_are_replaced(detector: Detector) -> None:
    conversation, redactor = Conversation(), Redactor()
    first = "My name is Maria Gonzalez but everyone calls me Maria"  # the model finds the full name only
    later = "Write to me at mg@example.org; mg@example.org is checked daily, Gonzalez."
    found = {first: detector.analyze(first), later: detector.analyze(later)}
    known = occurrences.values(found, RULES)
    out = [
        redactor.apply(text, occurrences.extend(text, found[text], known), RULES, "request", conversation).text
        for text in (first, later)
    ]
    assert out == [
        "My name is <PERSON_2> but everyone calls me <PERSON_1>",  # the anonymizer works from the end
        "Write to me at <EMAIL_ADDRESS_1>; <EMAIL_ADDRESS_1> is checked daily, <PERSON_3>.",
    ]
    # A later turn: the conversation remembers what it pseudonymized; the model finds nothing here.
    remembered = {v for e, value in conversation.values() for v in occurrences.expand(e, value, 1.0)}
    turn = "Thanks Maria!"
    assert detector.analyze(turn) == ()
    assert [turn[f.start : f.end] for f in occurrences.extend(turn, (), remembered)] == ["Maria"]
