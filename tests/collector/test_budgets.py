"""The collector sums spend from stored spans (GET /api/spend), reports budgets' spend in their window
(GET /api/budgets, what proxies poll), alerts at the soft threshold and the limit, and lets admins
raise a limit until the period resets."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from bastion import semconv
from bastion.proxy.keys import create_key
from bastion.settings import CollectorSettings
from factories.collector import app_client, decision_span, request, span
from support import TOKENS

AGENT_KEY: list[str] = []

BUDGETS = """\
budgets:
  agents-daily:
    per: agent
    period: day
    usd: 1.0
    alert_at: 0.5
  analysts-monthly:
    per: role
    period: month
    tokens: 1000
    alert_at: 0.6
"""


class Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        self.received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("BASTION_APPROVAL_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    Webhook.received.clear()
    yield Webhook.received
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def client(settings: CollectorSettings, tmp_path: Path, webhook: list[dict[str, Any]]) -> Iterator[TestClient]:
    (tmp_path / "bastion.yaml").write_text(BUDGETS)
    AGENT_KEY.append(create_key(tmp_path / "keys.yaml", "a1", "analyst")[0])
    with app_client(replace(settings, flush_interval=0.05, policies_dir=tmp_path)) as c:
        yield c


def call(agent: str, usd: float | None, tokens: tuple[int, int], key: str = "k1", **kw: Any) -> Any:
    attributes = decision_span(agent, **kw)
    attributes.update(
        {
            semconv.BASTION_AGENT_KEY_ID: key,
            semconv.GEN_AI_USAGE_INPUT_TOKENS: tokens[0],
            semconv.GEN_AI_USAGE_OUTPUT_TOKENS: tokens[1],
        }
    )
    if usd is not None:
        attributes[semconv.BASTION_COST_USD] = usd
    return span(attributes=attributes, start=time.time_ns())


def export(client: TestClient, *spans: Any, service: str = semconv.SERVICE_NAME_PROXY) -> None:
    body = request(*spans, service=service).SerializeToString()
    assert client.post("/v1/traces", content=body, headers={"content-type": "application/x-protobuf"}).is_success


def test_spend_is_summed_per_agent_role_and_key_per_period(client: TestClient) -> None:
    export(
        client,
        call("a1", 0.25, (100, 50)),
        call("a1", 0.5, (10, 5), key="k2"),
        call("a2", None, (7, 3)),  # a model without a price: tokens count, cost does not
        call("a1", 9.0, (1, 1), decision="deny", kind="http"),  # not a model call
    )
    by_agent = client.get("/api/spend", params={"by": "agent", "period": "day"}).json()["items"]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert [(i["agent"], i["cost_usd"], i["input_tokens"], i["output_tokens"], i["calls"]) for i in by_agent] == [
        ("a1", 0.75, 110, 55, 2),
        ("a2", 0.0, 7, 3, 1),
    ]
    assert by_agent[0]["period_start"].startswith(today) and by_agent[1]["unpriced_calls"] == 1
    by_key = client.get("/api/spend", params={"by": "key", "period": "month"}).json()["items"]
    assert {i["key"]: i["cost_usd"] for i in by_key} == {"k1": 0.25, "k2": 0.5}
    by_role = client.get("/api/spend", params={"by": "role", "period": "week"}).json()["items"]
    assert [(i["role"], i["calls"]) for i in by_role] == [("analyst", 3)]


def test_spans_agents_export_themselves_never_count(client: TestClient) -> None:
    export(client, call("a1", 5.0, (100, 100)))
    agent_key = client.post(
        "/v1/traces",
        content=request(call("a1", 50.0, (9, 9))).SerializeToString(),
        headers={"content-type": "application/x-protobuf", "authorization": f"Bearer {AGENT_KEY[-1]}"},
    )
    assert agent_key.is_success
    assert [i["cost_usd"] for i in client.get("/api/spend").json()["items"]] == [5.0]


@pytest.mark.parametrize(
    ("params", "status"),
    [({"by": "model"}, 400), ({"period": "year"}, 400), ({"since": "yesterday"}, 400)],
)
def test_bad_spend_queries_are_400(client: TestClient, params: dict[str, str], status: int) -> None:
    response = client.get("/api/spend", params=params)
    assert response.status_code == status
    assert next(iter(params)) in response.json()["error"]["message"]


def budget(state: dict[str, Any], name: str) -> dict[str, Any]:
    return next(b for b in state["budgets"] if b["name"] == name)


def current(client: TestClient, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """GET /api/budgets once ``ready`` holds (the collector sums at most once a second)."""
    deadline = time.monotonic() + 20
    while True:
        state: dict[str, Any] = client.get("/api/budgets").json()
        if ready(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def test_budgets_report_spend_in_the_window_and_alert_once_per_level(
    client: TestClient, webhook: list[dict[str, Any]]
) -> None:
    export(client, call("a1", 0.6, (400, 200)), call("a2", 0.1, (10, 10)))
    state = current(client, lambda state: len(budget(state, "agents-daily")["subjects"]) == 2)
    daily = budget(state, "agents-daily")
    assert {s["subject"]: (s["spent"], s["limit"], s["raised"]) for s in daily["subjects"]} == {
        "a1": (0.6, 1.0, False),
        "a2": (0.1, 1.0, False),
    }
    assert daily["window_end"] - daily["window_start"] == 86_400
    monthly = budget(state, "analysts-monthly")
    assert [(s["subject"], s["spent"]) for s in monthly["subjects"]] == [("analyst", 620.0)]

    assert wait_for_alerts(client, 2) == [
        ("budget_soft", "Budget agents-daily passed 50% for agent a1"),
        ("budget_soft", "Budget analysts-monthly passed 60% for role analyst"),
    ]
    export(client, call("a1", 0.5, (1, 1)))
    assert wait_for_alerts(client, 3)[0] == ("budget_exceeded", "Budget agents-daily is spent for agent a1")
    deadline = time.monotonic() + 20
    while len(webhook) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted((w["alert"]["type"], w["alert"]["name"], w["alert"]["subjects"][0]["subject"]) for w in webhook) == [
        ("budget_exceeded", "agents-daily", "a1"),
        ("budget_soft", "agents-daily", "a1"),
        ("budget_soft", "analysts-monthly", "analyst"),
    ]
    assert webhook[-1]["text"].startswith("Bastion: Budget agents-daily is spent for agent a1")


def wait_for_alerts(client: TestClient, count: int) -> list[tuple[str, str]]:
    """The budget alerts (type, message up to its colon), once there are ``count`` (the collector sums every
    second in the background)."""
    deadline = time.monotonic() + 20
    while True:
        alerts = [a for a in client.get("/api/alerts").json()["items"] if a["type"].startswith("budget")]
        if len(alerts) >= count or time.monotonic() > deadline:
            return sorted((a["type"], a["message"].split(":")[0]) for a in alerts)
        time.sleep(0.1)


def test_an_admin_raises_a_limit_until_the_period_resets(client: TestClient) -> None:
    export(client, call("a1", 1.2, (1, 1)))
    body = {"subject": "a1", "by": 1.0, "reason": "release week"}
    refused = client.post(
        "/api/budgets/agents-daily/raise", json=body, headers={"authorization": f"Bearer {TOKENS['approver']}"}
    )
    assert refused.status_code == 403
    raised = client.post("/api/budgets/agents-daily/raise", json=body).json()
    assert (raised["previous_limit"], raised["limit"], raised["by"]) == (1.0, 2.0, "test-admin")
    again = client.post("/api/budgets/agents-daily/raise", json={"subject": "a1", "to": 5}).json()
    assert (again["previous_limit"], again["limit"]) == (2.0, 5.0)
    daily = budget(current(client, lambda state: budget(state, "agents-daily")["subjects"] != []), "agents-daily")
    assert [(s["subject"], s["spent"], s["limit"], s["raised"]) for s in daily["subjects"]] == [("a1", 1.2, 5.0, True)]
    audit = client.get("/api/audit", params={"decision": "raise"}).json()["items"]
    assert [(a["rule"], a["approval_approver"]) for a in audit] == [("budget:agents-daily", "test-admin")] * 2


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("nope", {"subject": "a1", "to": 2}, 404),
        ("agents-daily", {"to": 2}, 400),
        ("agents-daily", {"subject": "a" * 257, "to": 2}, 400),
        ("agents-daily", {"subject": "a1"}, 400),
        ("agents-daily", {"subject": "a1", "to": 2, "by": 1}, 400),
        ("agents-daily", {"subject": "a1", "to": -1}, 400),
    ],
)
def test_bad_raises_are_refused(client: TestClient, name: str, body: dict[str, Any], status: int) -> None:
    assert client.post(f"/api/budgets/{name}/raise", json=body).status_code == status
