"""Attack: a model call whose body Bastion cannot parse must not pass for something else.

A 10,000-deep JSON body to /openai/v1/chat/completions made Python's parser raise RecursionError in
the validating addon; mitmproxy logged it and went on, the call was classified as a plain HTTP call
and decided by HTTP rules (here an agent allowed to reach any HTTP tool), skipping model rules and
redaction, and reached the model. It is refused with 400 in OpenAI's format and never arrives.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from factories import processes
from support import copy_policies, create_key, free_ports

# An agent that may also call any plain HTTP tool: the rule a downgraded model call would match.
HTTP_RULE = "p, role:assistant, http:*, *, allow, any-http-tool,\n"


@dataclass
class Stack:
    proxy: str
    model: str
    key: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("body-limits")
    policies = tmp / "policies"
    copy_policies(policies, "tests", "keys.yaml")
    with (policies / "policy.csv").open("a") as f:
        f.write(HTTP_RULE)
    key = create_key(tmp / "keys.yaml")
    model_port, collector_port, *proxy_ports = free_ports(4)
    env = processes.routes_env(processes.url(model_port), tmp / "keys.yaml", processes.url(collector_port))
    with (
        processes.scripted_model(tmp, model_port) as model,
        processes.proxy(tmp, "proxy", proxy_ports, env, policies) as proxy,
    ):
        processes.ready(model, proxy)
        yield Stack(proxy.url, model.url, key)


def test_a_10000_deep_json_body_to_a_model_route_is_refused_and_never_reaches_the_model(stack: Stack) -> None:
    depth = 10_000
    body = b'{"model": "scripted-small", "messages": [{"role": "user", "content": "mail alice@example.com"}], "x": '
    body += b"[" * depth + b"]" * depth + b"}"
    r = httpx.post(
        f"{stack.proxy}/openai/v1/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {stack.key}", "content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400, r.text
    assert r.headers["x-bastion-error"] == "invalid_json"
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and "nested deeper than 100 levels" in error["message"]
    assert httpx.get(f"{stack.model}/_scripted/requests").json() == []
