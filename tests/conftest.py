from __future__ import annotations

from collections.abc import Iterator

import pytest

from factories import clients


@pytest.fixture(autouse=True)
def _close_sdk_clients() -> Iterator[None]:
    """A client left to the garbage collector warns about its socket, and warnings are errors here."""
    yield
    clients.close_all()
