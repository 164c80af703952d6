from __future__ import annotations

import pytest

from bastion.proxy.pii.config import KNOWN_ENTITIES
from bastion.proxy.pii.detector import Detector

ENTITIES = KNOWN_ENTITIES - {
    "DATE_TIME",
    "URL",
    "CRYPTO",
    "MAC_ADDRESS",
    "US_BANK_NUMBER",
    "US_PASSPORT",
    "ORGANIZATION",
    "NRP",
}


@pytest.fixture(scope="session")
def detector() -> Detector:
    return Detector(ENTITIES)


@pytest.fixture(scope="session")
def pattern_detector() -> Detector:
    return Detector(ENTITIES - {"PERSON", "LOCATION"})
