from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import support
from factories import clients

# Every process and command the tests run without naming its policies reads this copy of the
# bundled policies, never the live folder (support.refuse_live_policies).
os.environ["BASTION_POLICIES"] = str(support.SESSION_POLICIES)


@pytest.fixture(autouse=True)
def _close_sdk_clients() -> Iterator[None]:
    """A client left to the garbage collector warns about its socket, and warnings are errors here."""
    yield
    clients.close_all()
