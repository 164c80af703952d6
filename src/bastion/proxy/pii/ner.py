"""spaCy NER for Presidio, run only where a name could be.

The small English model finds names, places and organisations through capitalisation: a sentence
whose only capitals are ``I``, a weekday or a common first word ("The", "Could", "My") holds none
it would find. Such sentences skip the model; the others run through it in one batch, and their
entities are placed on the tokens of the whole text, so Presidio sees what a full run would give
(tests/proxy/pii/test_ner.py compares the two).

The model's matrix products go through numpy's BLAS: thinc's default (blis) runs several times
slower on these machines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import spacy
from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine
from spacy.lang.en.stop_words import STOP_WORDS
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import filter_spans
from thinc.api import use_ops

SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n\s*")
CAPITALISED = re.compile(r"\b[A-Z][\w'’-]*")
LETTER = re.compile(r"[^\W\d_]")
# Capitalised everywhere, never a person, place or organisation.
ALWAYS_COMMON = frozenset(
    {"I", "I'm", "I've", "I'll", "I'd", "I’m", "I’ve", "I’ll", "I’d"}
    | {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
)


def load_ner(model: str) -> Language:
    """The model with only its NER component (it has its own embedding layer), on numpy ops."""
    with use_ops("numpy", use_blis=False):
        return spacy.load(model, exclude=["tok2vec", "parser", "tagger", "attribute_ruler", "lemmatizer", "senter"])


def sentences(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each sentence-like piece of ``text``: split after . ! ? ; : and at line breaks."""
    start = 0
    for gap in SENTENCE_END.finditer(text):
        if gap.start() > start:
            yield start, gap.start()
        start = gap.end()
    if start < len(text):
        yield start, len(text)


def could_hold_a_name(sentence: str) -> bool:
    letter = LETTER.search(sentence)
    first_word = letter.start() if letter else -1  # the first word starts at the first letter ("1. The")
    for word in CAPITALISED.finditer(sentence):
        if word.group() in ALWAYS_COMMON or (word.start() == first_word and word.group().lower() in STOP_WORDS):
            continue
        return True
    return False


def name_windows(text: str) -> list[tuple[int, int]]:
    """Runs of consecutive sentences that could hold a name, as (start, end) of ``text``."""
    windows: list[tuple[int, int]] = []
    previous_was_candidate = False
    for start, end in sentences(text):
        candidate = could_hold_a_name(text[start:end])
        if candidate and previous_was_candidate:
            windows[-1] = (windows[-1][0], end)
        elif candidate:
            windows.append((start, end))
        previous_was_candidate = candidate
    return windows


class LeanSpacyNlpEngine(SpacyNlpEngine):
    """Presidio's spaCy engine over a given pipeline, without the keywords (lemmas that are not stop
    words) it computes for context enhancement, which Bastion switches off: they cost a third of a
    pattern-only analysis."""

    def __init__(self, nlp: Language) -> None:
        super().__init__(models=[{"lang_code": "en", "model_name": "unused"}])
        self.nlp = {"en": nlp}  # type: ignore[assignment]

    def _doc_to_nlp_artifact(self, doc: Doc, language: str) -> NlpArtifacts:
        entities, scores = self._get_updated_entities(self._get_entities(doc), self._get_scores_for_entities(doc))
        # No engine: NlpArtifacts computes keywords only with one.
        return NlpArtifacts(entities, doc, [], [], None, language, scores)  # type: ignore[arg-type]


class WindowedSpacyNlpEngine(LeanSpacyNlpEngine):
    """Tokenizes the whole text, runs NER only on the windows that could hold a name."""

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        nlp = self.nlp[language]  # type: ignore[index]
        doc = nlp.make_doc(text)
        windows = name_windows(text)
        entities: list[Span] = []
        for (offset, _), window in zip(windows, nlp.pipe(text[s:e] for s, e in windows), strict=True):
            for ent in window.ents:
                start, end = offset + ent.start_char, offset + ent.end_char
                span = doc.char_span(start, end, ent.label_, alignment_mode="expand")
                if span is not None:
                    entities.append(span)
        doc.set_ents(filter_spans(entities))
        return self._doc_to_nlp_artifact(doc, language)
