"""The Bastion key a request presents: API-key headers, Gemini's ``?key=``, proxy credentials."""

from __future__ import annotations

import pytest
from mitmproxy import http

from bastion.proxy.credentials import presented_key, query_key


@pytest.mark.parametrize(
    "headers",
    [{"authorization": "Bearer bst_1"}, {"x-api-key": "bst_1"}, {"x-goog-api-key": "bst_1"}],
)
def test_the_key_is_read_from_each_apis_header(headers: dict[str, str]) -> None:
    assert presented_key(http.Headers(**headers)) == "bst_1"


@pytest.mark.parametrize(
    ("path", "key", "rest"),
    [
        (
            "/v1beta/models/m:streamGenerateContent?alt=sse&key=bst_1",
            "bst_1",
            "/v1beta/models/m:streamGenerateContent?alt=sse",
        ),
        ("/v1beta/models/m:generateContent?key=bst%2B1", "bst+1", "/v1beta/models/m:generateContent"),
        ("/v1/x?keys=1&a=b", None, "/v1/x?keys=1&a=b"),
        ("/v1/x", None, "/v1/x"),
    ],
)
def test_a_key_in_the_query_is_taken_out_of_the_path(path: str, key: str | None, rest: str) -> None:
    assert query_key(path) == (key, rest)
