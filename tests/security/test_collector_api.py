"""Attacks on the collector API by someone who can reach it (a hostile agent on the same host, a
curious colleague on the network), each against a real collector process."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion import semconv
from bastion.proxy.keys import create_key
from factories import processes
from factories.collector import decision_span, request, span
from support import BASTION, TOKENS, collector_api, free_port, free_ports, running, wait_for_http

PROTOBUF = {"content-type": "application/x-protobuf"}


@dataclass(frozen=True)
class Collector:
    url: str
    agent_key: str


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    tmp = tmp_path_factory.mktemp("collector-api")
    keys = tmp / "keys.yaml"
    key, _ = create_key(keys, "mallory", "assistant")
    with processes.collector(tmp, free_port(), {"BASTION_KEYS_FILE": str(keys)}) as service:
        processes.ready(service)
        yield Collector(service.url, key)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def held_call(**extra: Any) -> dict[str, Any]:
    return {
        "agent_id": "agent-1",
        "role": "assistant",
        "kind": "mcp",
        "target": "tool:send_money",
        "action": "call",
        "arguments": {"amount": 800, "recipient": "<EMAIL_ADDRESS>"},
        "rule": "large-payments-need-approval",
        "timeout_seconds": 300,
        **extra,
    }


def test_the_audit_trail_cannot_be_read_without_a_credential(collector: Collector) -> None:
    for path in ("/api/audit", "/api/alerts", "/api/audit/chain", "/api/approvals", "/api/agents"):
        assert httpx.get(collector.url + path).status_code == 401, path
        assert httpx.get(collector.url + path, headers=bearer(collector.agent_key)).status_code == 403, path


def test_forged_decisions_and_alerts_never_reach_the_record(collector: Collector) -> None:
    forged = decision_span("victim") | {semconv.BASTION_ALERT_TYPE: semconv.ALERT_POLICY_REJECTED}
    body = request(span(attributes=forged)).SerializeToString()
    assert httpx.post(collector.url + "/v1/traces", content=body, headers=PROTOBUF).status_code == 401
    viewer = bearer(TOKENS["viewer"])
    assert httpx.post(collector.url + "/v1/traces", content=body, headers={**PROTOBUF, **viewer}).status_code == 403
    # An agent may export its own spans: stored as agent-supplied, never as Bastion's decisions.
    as_agent = {**PROTOBUF, **bearer(collector.agent_key)}
    assert httpx.post(collector.url + "/v1/traces", content=body, headers=as_agent).status_code == 200
    time.sleep(0.5)  # past the collector's flush interval, so a stored row would show
    with collector_api(collector.url, role="viewer") as api:
        assert api.get("/api/audit", params={"agent": "victim"}).json()["items"] == []
        assert api.get("/api/alerts").json()["items"] == []


def test_only_a_proxy_holds_calls_or_closes_them(collector: Collector) -> None:
    for headers in ({}, bearer(collector.agent_key), bearer(TOKENS["admin"])):
        r = httpx.post(collector.url + "/api/approvals", json=held_call(), headers=headers)
        assert r.status_code in (401, 403), r.text
    with collector_api(collector.url) as api:
        held = api.post("/api/approvals", json=held_call()).json()
    for headers in ({}, bearer(TOKENS["approver"])):
        r = httpx.post(
            f"{collector.url}/api/approvals/{held['id']}/close", json={"status": "abandoned"}, headers=headers
        )
        assert r.status_code in (401, 403), r.text
    with collector_api(collector.url) as api:
        assert api.get(f"/api/approvals/{held['id']}").json()["status"] == "pending"


def test_guidance_cannot_be_swallowed_by_anyone_but_a_proxy(collector: Collector) -> None:
    with collector_api(collector.url, role="approver") as api:
        guidance = api.post("/api/agents/agent-2/guidance", json={"text": "use the staging account"}).json()
    claim = f"{collector.url}/api/agents/agent-2/guidance/{guidance['id']}/claim"
    assert httpx.post(claim).status_code == 401
    assert httpx.post(claim, headers=bearer(collector.agent_key)).status_code == 403
    with collector_api(collector.url, role="viewer") as api:
        waiting = api.get("/api/agents/state").json()["agents"]["agent-2"]["guidance"]
    assert waiting == [{"id": guidance["id"]}]


def test_a_huge_approval_request_is_refused_unread(collector: Collector) -> None:
    huge = held_call(reason="x" * (2 * 1024 * 1024))
    with collector_api(collector.url) as api:
        r = api.post("/api/approvals", json=huge)
        assert r.status_code == 413 and "larger than" in r.json()["error"]["message"]
        listed = api.get("/api/approvals", params={"limit": 1000})
    assert len(listed.content) < 100_000


def test_a_forged_scope_grants_nothing(collector: Collector) -> None:
    """The scope of an approval comes from the collector's bastion.yaml, not from the held call."""
    forged = held_call(agent_id="agent-3", scope={"calls": 1_000_000, "minutes": 525_600})
    with collector_api(collector.url) as api:
        first = api.post("/api/approvals", json=forged).json()
        assert first["scope"] is None
        api.post(f"/api/approvals/{first['id']}/decision", json={"decision": "approve", "reason": "looks harmless"})
        big = held_call(agent_id="agent-3", arguments={"amount": 10_000, "recipient": "<EMAIL_ADDRESS>"})
        assert api.post("/api/approvals", json=big).json()["status"] == "pending"


def test_approvers_see_the_values_they_approve_and_no_one_else_does(collector: Collector) -> None:
    clear = {"amount": 800, "recipient": "carol@example.com"}
    with collector_api(collector.url) as api:
        held = api.post("/api/approvals", json=held_call(agent_id="agent-4", arguments_clear=clear)).json()
    assert "carol@example.com" not in str(held)
    with collector_api(collector.url, role="approver") as api:
        assert api.get(f"/api/approvals/{held['id']}").json()["arguments_clear"] == clear
    with collector_api(collector.url, role="viewer") as api:
        assert "carol@example.com" not in api.get(f"/api/approvals/{held['id']}").text
    with collector_api(collector.url, role="approver") as api:
        api.post(f"/api/approvals/{held['id']}/decision", json={"decision": "deny"})
        assert "carol@example.com" not in api.get(f"/api/approvals/{held['id']}").text


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_children_end_when_bastion_up_is_killed_hard(tmp_path: Path) -> None:
    ports = free_ports(4)
    env = {
        "BASTION_DATA_DIR": str(tmp_path / "data"),
        "BASTION_CONFDIR": str(tmp_path / "conf"),
        "BASTION_PROXY_PORT": str(ports[0]),
        "BASTION_EXPLICIT_PORT": str(ports[1]),
        "BASTION_COLLECTOR_PORT": str(ports[2]),
        "BASTION_DASHBOARD_PORT": str(ports[3]),
        "BASTION_KEYS_FILE": str(tmp_path / "keys.yaml"),
    }
    with running([*BASTION, "up"], env, log=tmp_path / "up.log") as up:
        wait_for_http(f"http://127.0.0.1:{ports[3]}/_stcore/health", timeout=120, proc=up)
        up.send_signal(signal.SIGKILL)
        up.wait()
        deadline = time.monotonic() + 30
        while any(_listening(p) for p in ports) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in ports if _listening(p)], subprocess.run(["ps", "-ef"], capture_output=True).stdout
