"""Every collector route but /healthz needs a credential with the right role (bastion.operators)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bastion import semconv
from bastion.proxy.keys import create_key
from bastion.settings import CollectorSettings
from factories.collector import app_client, decision_span, request, span, trace_id
from support import TOKENS

PROTOBUF = {"content-type": "application/x-protobuf"}


@pytest.fixture
def agent_key(tmp_path: Path) -> tuple[Path, str]:
    keys = tmp_path / "keys.yaml"
    return keys, create_key(keys, "agent-7", "assistant")[0]


@pytest.fixture
def client(settings: CollectorSettings, agent_key: tuple[Path, str]) -> Iterator[TestClient]:
    with app_client(replace(settings, flush_interval=0.05, keys_file=agent_key[0], max_json_bytes=4096)) as c:
        yield c


def bearer(role_or_token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {TOKENS.get(role_or_token, role_or_token)}"}  # type: ignore[call-overload]


NONE = {"authorization": ""}  # TestCredentials sends nothing


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/audit"),
        ("GET", "/api/alerts"),
        ("GET", "/api/overview"),
        ("GET", "/api/traces/" + "a" * 32),
        ("GET", "/api/audit/chain"),
        ("GET", "/api/approvals"),
        ("GET", "/api/agents"),
        ("GET", "/api/agents/state"),
        ("GET", "/api/operators"),
        ("POST", "/api/approvals"),
        ("POST", "/api/agents/a/suspend"),
        ("POST", "/v1/traces"),
    ],
)
def test_no_credential_is_401_with_a_challenge(client: TestClient, method: str, path: str) -> None:
    r = client.request(method, path, headers=NONE, json={})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer") and "credential" in r.json()["error"]["message"]


def test_health_needs_nothing(client: TestClient) -> None:
    assert client.get("/healthz", headers=NONE).status_code == 200


@pytest.mark.parametrize(
    ("role", "method", "path", "status"),
    [
        ("viewer", "GET", "/api/audit", 200),
        ("viewer", "POST", "/api/agents/a/suspend", 403),
        ("viewer", "GET", "/api/operators", 403),
        ("approver", "POST", "/api/agents/a/suspend", 200),
        ("approver", "POST", "/api/approvals", 403),
        ("admin", "GET", "/api/operators", 200),
        ("admin", "POST", "/api/approvals", 403),
        ("proxy", "GET", "/api/audit", 403),
        ("proxy", "GET", "/api/agents/state", 200),
        ("viewer", "GET", "/api/agents/state", 200),
        # A proxy suspends an agent whose runaway breaker tripped; only a human resumes it.
        ("proxy", "POST", "/api/agents/a/suspend", 200),
        ("proxy", "POST", "/api/agents/a/resume", 403),
    ],
)
def test_each_role_reaches_what_it_may(client: TestClient, role: str, method: str, path: str, status: int) -> None:
    r = client.request(method, path, headers=bearer(role), json={"reason": "test"})
    assert r.status_code == status, r.text


def test_operators_cannot_write_spans_and_agent_keys_read_nothing(
    client: TestClient, agent_key: tuple[Path, str]
) -> None:
    body = request(span()).SerializeToString()
    r = client.post("/v1/traces", content=body, headers={**PROTOBUF, **bearer("admin")})
    assert r.status_code == 403 and "operator" in r.json()["error"]["message"]
    r = client.get("/api/audit", headers=bearer(agent_key[1]))
    assert r.status_code == 403 and "Agent keys" in r.json()["error"]["message"]
    assert client.get("/api/audit", headers=bearer("bst_unknown")).status_code == 403


def test_spans_an_agent_exports_are_stored_as_its_own_never_as_decisions(
    client: TestClient, agent_key: tuple[Path, str]
) -> None:
    forged = decision_span("someone-else") | {semconv.BASTION_ALERT_TYPE: "policy_rejected"}
    trace = trace_id()
    body = request(span(name="forged decision", trace=trace, attributes=forged)).SerializeToString()
    r = client.post("/v1/traces", content=body, headers={**PROTOBUF, **bearer(agent_key[1])})
    assert r.status_code == 200, r.text
    assert client.get("/api/audit").json()["items"] == []
    assert client.get("/api/alerts").json()["items"] == []
    assert client.get("/api/audit/chain").json()["items"] == []
    stored = client.get(f"/api/traces/{trace.hex()}").json()["spans"][0]["attributes"]
    assert stored[semconv.BASTION_SOURCE] == semconv.SOURCE_AGENT and stored[semconv.BASTION_AGENT_ID] == "agent-7"
    assert semconv.BASTION_DECISION not in stored and semconv.BASTION_ALERT_TYPE not in stored
    revoked = client.post("/v1/traces", content=body, headers={**PROTOBUF, **bearer("bst_revoked")})
    assert revoked.status_code == 401


def test_a_json_body_over_the_limit_is_413_unread(client: TestClient) -> None:
    r = client.post("/api/agents/a/guidance", json={"text": "x" * 5000}, headers=bearer("approver"))
    assert r.status_code == 413 and "larger than 4096" in r.json()["error"]["message"]
    assert client.get("/api/agents").json()["items"] == []


def test_admins_manage_operators_through_the_api(client: TestClient) -> None:
    r = client.post("/api/operators", json={"name": "dana", "role": "viewer"})
    assert r.status_code == 201 and r.json()["token"].startswith("bop_")
    token = r.json()["token"]
    assert client.get("/api/whoami", headers=bearer(token)).json() == {
        "id": token.split("_")[1],
        "name": "dana",
        "role": "viewer",
    }
    assert client.post("/api/operators", json={"name": "eve", "role": "proxy"}).status_code == 400
    operator_id = token.split("_")[1]
    assert client.delete(f"/api/operators/{operator_id}").status_code == 200
    assert client.get("/api/whoami", headers=bearer(token)).status_code == 401
