from __future__ import annotations

from collections.abc import Iterator

import pytest

from factories import processes
from support import free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The scripted model server's base URL."""
    with processes.scripted_model(tmp_path_factory.mktemp("model"), free_port()) as model:
        processes.ready(model)
        yield model.url
