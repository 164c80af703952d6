"""A bounded fuzz run of the collector's API from its own OpenAPI document (schemathesis generates
the requests): no input gets a 5xx, every status it answers is documented, and it keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from factories import processes
from support import TOKENS, free_port, proxy_route

# Few cases per operation keep the whole run to a few hundred requests.
EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("collector-fuzz")
    with processes.collector(tmp, free_port()) as service:
        processes.ready(service)
        yield service.url


def fuzz(operation: Any, headers: dict[str, str], problems: list[str]) -> int:
    """Call one operation with generated inputs; returns how many calls were made."""
    documented = {str(code) for code in operation.definition.raw.get("responses", {})} | {"default"}
    calls = 0

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        nonlocal calls
        calls += 1
        response = case.call(headers=headers, timeout=30)
        if response.status_code >= 500 or str(response.status_code) not in documented:
            problems.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

    run()
    return calls


def test_no_input_breaks_the_collector(collector: str) -> None:
    schema = schemathesis.openapi.from_url(f"{collector}/openapi.json")
    problems: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        path = operation.path.replace("{", "").replace("}", "")
        role = "proxy" if proxy_route(operation.method.upper(), path) else "admin"
        calls += fuzz(operation, {"authorization": f"Bearer {TOKENS[role]}"}, problems)
    assert calls >= 100
    assert not problems, "\n".join(sorted(set(problems))[:40])
    assert httpx.get(f"{collector}/healthz", timeout=10).json() == {"status": "ok"}
