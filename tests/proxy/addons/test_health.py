"""Health: GET /healthz on the reverse proxy is answered by the proxy itself, and is not an agent's call."""

import json

import pytest
from mitmproxy.proxy.mode_specs import ProxyMode

from bastion.proxy.state import INTERNAL
from factories.addons import health, run
from factories.proxy import REGULAR, REVERSE, flow


def test_the_health_check_is_answered_and_marked_internal() -> None:
    f = run(health(), flow("/healthz", method="GET"), "requestheaders")
    assert f.response is not None and f.response.status_code == 200
    assert json.loads(f.response.content or b"") == {"status": "ok"}
    assert f.metadata[INTERNAL] is True  # no span, no audit record, not counted


@pytest.mark.parametrize(
    ("method", "path", "mode"),
    [("POST", "/healthz", REVERSE), ("GET", "/healthz", REGULAR), ("GET", "/openai/healthz", REVERSE)],
)
def test_other_requests_are_left_alone(method: str, path: str, mode: ProxyMode) -> None:
    f = run(health(), flow(path, method=method, mode=mode), "requestheaders")
    assert f.response is None and INTERNAL not in f.metadata
