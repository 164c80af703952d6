"""End to end: `bastion up` with real processes, driven by the official openai and anthropic SDKs."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from factories import clients
from support import AUTH, BASTION, create_key, free_port, free_ports, running, stop, wait_for_http

PROVIDER_KEY = "real-provider-key"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


@dataclass
class Stack:
    proxy: str
    explicit: str
    collector: str
    model: str
    key: str
    ca_cert: Path
    data_dir: Path
    process: subprocess.Popen[bytes]
    ports: tuple[int, ...]

    def upstream_requests(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.model}/_scripted/requests").json())

    def audit(self, **params: Any) -> list[dict[str, Any]]:
        return list(httpx.get(auth=AUTH, url=f"{self.collector}/api/audit", params=params).json()["items"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    model_port, proxy_port, explicit_port, collector_port, dashboard_port = free_ports(5)
    key = create_key(tmp / "keys.yaml", "agent-1", "assistant")
    model = f"http://127.0.0.1:{model_port}"
    env = {
        "BASTION_OPENAI_UPSTREAM": model + "/",
        "BASTION_ANTHROPIC_UPSTREAM": model + "/",
        "OPENAI_API_KEY": PROVIDER_KEY,
        "ANTHROPIC_API_KEY": PROVIDER_KEY,
        "BASTION_KEYS_FILE": str(tmp / "keys.yaml"),
        "BASTION_DATA_DIR": str(tmp / "data"),
        "BASTION_CONFDIR": str(tmp / "conf"),
        "BASTION_PROXY_PORT": str(proxy_port),
        "BASTION_EXPLICIT_PORT": str(explicit_port),
        "BASTION_COLLECTOR_PORT": str(collector_port),
        "BASTION_DASHBOARD_PORT": str(dashboard_port),
    }
    with (
        running(
            [*BASTION, "scripted-model", "--port", str(model_port)], {"BASTION_SCRIPTED_CHUNK_DELAY": "0.2"}
        ) as model_proc,
        running([*BASTION, "up"], env, log=tmp / "up.log") as up,
    ):
        wait_for_http(f"{model}/v1/models", proc=model_proc)
        wait_for_http(f"http://127.0.0.1:{dashboard_port}/_stcore/health", timeout=90, proc=up)
        httpx.delete(f"{model}/_scripted/requests")  # forget the readiness probe
        yield Stack(
            proxy=f"http://127.0.0.1:{proxy_port}",
            explicit=f"http://127.0.0.1:{explicit_port}",
            collector=f"http://127.0.0.1:{collector_port}",
            model=model,
            key=key,
            ca_cert=tmp / "conf" / "mitmproxy-ca-cert.pem",
            data_dir=tmp / "data",
            process=up,
            ports=(proxy_port, explicit_port, collector_port, dashboard_port),
        )


def openai_client(stack: Stack, key: str | None = None) -> openai.OpenAI:
    return clients.openai_client(f"{stack.proxy}/openai/v1", key or stack.key)


def anthropic_client(stack: Stack) -> anthropic.Anthropic:
    return clients.anthropic_client(f"{stack.proxy}/anthropic", stack.key)


def test_openai_calls_reach_the_model_and_return_its_answer(stack: Stack) -> None:
    client = openai_client(stack)
    reply = client.chat.completions.create(
        model="scripted-small",
        messages=[{"role": "user", "content": "hello openai"}],
        extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"},
    )
    assert "hello openai" in (reply.choices[0].message.content or "")
    chunks = client.chat.completions.create(
        model="scripted-small",
        messages=[{"role": "user", "content": "stream openai"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    arrivals = [(time.monotonic(), c) for c in chunks]
    text = "".join(c.choices[0].delta.content or "" for _, c in arrivals if c.choices)
    assert "stream openai" in text
    # The model pauses 0.2 s between events: unbuffered, they arrive spread out, not all at the end.
    assert arrivals[-1][0] - arrivals[0][0] > 0.6


def test_anthropic_calls_reach_the_model_and_return_its_answer(stack: Stack) -> None:
    client = anthropic_client(stack)
    message = client.messages.create(
        model="scripted-small", max_tokens=50, messages=[{"role": "user", "content": "hello anthropic"}]
    )
    assert "hello anthropic" in message.content[0].text  # type: ignore[union-attr]
    with client.messages.stream(
        model="scripted-small", max_tokens=50, messages=[{"role": "user", "content": "stream anthropic"}]
    ) as stream:
        assert "stream anthropic" in "".join(stream.text_stream)


def test_upstream_sees_the_provider_key_never_the_agent_key(stack: Stack) -> None:
    seen = stack.upstream_requests()
    assert seen
    for request in seen:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        credential = headers.get("authorization", "").removeprefix("Bearer ") or headers.get("x-api-key")
        assert credential == PROVIDER_KEY
        assert stack.key not in str(request)


def test_denied_calls_get_403_naming_the_rule_and_never_reach_upstream(stack: Stack) -> None:
    before = len(stack.upstream_requests())
    with pytest.raises(openai.PermissionDeniedError, match="no-large-models"):
        openai_client(stack).chat.completions.create(
            model="scripted-large", messages=[{"role": "user", "content": "denied"}]
        )
    with pytest.raises(anthropic.PermissionDeniedError, match="no-large-models"):
        anthropic_client(stack).messages.create(
            model="scripted-large", max_tokens=5, messages=[{"role": "user", "content": "denied"}]
        )
    assert len(stack.upstream_requests()) == before


def test_unknown_key_gets_401(stack: Stack) -> None:
    with pytest.raises(openai.AuthenticationError, match="unknown or revoked"):
        openai_client(stack, key="bst_not-a-key").chat.completions.create(
            model="scripted-small", messages=[{"role": "user", "content": "x"}]
        )


def test_bad_input_gets_a_json_4xx_and_the_proxy_keeps_serving(stack: Stack) -> None:
    auth = {"authorization": f"Bearer {stack.key}"}
    url = f"{stack.proxy}/openai/v1/chat/completions"
    assert httpx.post(url, content=b"{nope", headers={**auth, "content-type": "application/json"}).status_code == 400
    assert httpx.post(url, content=b"x", headers={**auth, "content-type": "text/plain"}).status_code == 415
    assert httpx.post(url, content=b"x" * (11 * 1024 * 1024), headers=auth).status_code == 413
    missing = httpx.get(f"{stack.proxy}/nowhere", headers=auth)
    assert missing.status_code == 404 and "unknown_route" in missing.text
    assert httpx.get(f"{stack.proxy}/healthz").status_code == 200


def test_explicit_proxy_mode_with_bastions_ca(stack: Stack) -> None:
    context = ssl.create_default_context(cafile=str(stack.ca_cert))
    # The agent's Bastion key is its proxy credentials (a CONNECT without them gets 407) and its API key.
    proxy = stack.explicit.replace("http://", f"http://agent-1:{stack.key}@")
    with httpx.Client(proxy=proxy, verify=context) as http_client:
        client = openai.OpenAI(
            base_url="https://api.openai.com/v1", api_key=stack.key, http_client=http_client, max_retries=0
        )
        reply = client.chat.completions.create(
            model="scripted-small", messages=[{"role": "user", "content": "via proxy"}]
        )
    assert "via proxy" in (reply.choices[0].message.content or "")


def wait_for_audit(stack: Stack, count: int, **params: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while len(items := stack.audit(limit=500, **params)) < count and time.monotonic() < deadline:
        time.sleep(0.3)
    return items


def test_every_call_is_in_the_audit_trail_with_its_attributes(stack: Stack) -> None:
    allowed = wait_for_audit(stack, 5, decision="allow", agent="agent-1")
    assert len(allowed) >= 5
    chat = next(i for i in allowed if i["trace_id"] == TRACE_ID)
    assert chat["operation"] == "chat" and chat["provider"] == "openai" and chat["kind"] == "model"
    assert chat["request_model"] == "scripted-small" and chat["response_model"] == "scripted-small"
    assert chat["rule"] == "assistant-scripted-models" and len(chat["policy_version"]) == 12
    assert chat["input_tokens"] and chat["output_tokens"]
    streamed = [i for i in allowed if i["provider"] == "anthropic"]
    assert any(i["output_tokens"] for i in streamed)
    denied = wait_for_audit(stack, 2, decision="deny", agent="agent-1")
    assert {i["rule"] for i in denied} >= {"no-large-models"}
    timestamps = [i["timestamp"] for i in stack.audit()]
    assert timestamps == sorted(timestamps, reverse=True)


def test_trace_view_continues_the_agents_trace(stack: Stack) -> None:
    wait_for_audit(stack, 1, decision="allow")
    trace = httpx.get(auth=AUTH, url=f"{stack.collector}/api/traces/{TRACE_ID}").json()
    (span,) = trace["spans"]
    assert span["parent_span_id"] == PARENT_SPAN and span["span_name"] == "chat scripted-small"
    assert span["attributes"]["bastion.agent.id"] == "agent-1"


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_zz_stopping_up_stops_every_child_and_the_data_survives(stack: Stack) -> None:
    before = len(stack.audit(limit=500))
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=30) == 0
    assert not any(port_open(p) for p in stack.ports)
    port = free_port()
    with running([*BASTION, "collector", "--collector-port", str(port), "--data-dir", str(stack.data_dir)]) as proc:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
        items = httpx.get(auth=AUTH, url=f"http://127.0.0.1:{port}/api/audit", params={"limit": 500}).json()["items"]
        assert len(items) == before > 0
    stop(proc)
