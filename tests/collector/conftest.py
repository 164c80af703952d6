"""Collector fixtures. chDB allows one data path per process: every test shares one directory and
gets its own database in it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.collector.store import Store
from bastion.settings import CollectorSettings
from factories.collector import settings as make_settings


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def settings(data_dir: Path) -> CollectorSettings:
    return make_settings(data_dir, f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(settings: CollectorSettings) -> Iterator[Store]:
    s = Store.open(settings)
    s.migrate()
    yield s
    s.close()
