"""The approvals page against a real collector: deciding held calls and stepping in, as an approver."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData
from streamlit.testing.v1 import AppTest, local_script_runner

from support import AUTH, BASTION, OPERATORS_FILE, ROOT, TOKENS, free_port, running, wait_for_http

APP = ROOT / "src" / "bastion" / "dashboard" / "app.py"


@dataclass(frozen=True)
class Collector:
    url: str
    token: str


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    work = tmp_path_factory.mktemp("approvals-page")
    policies = work / "policies"
    policies.mkdir()
    out = subprocess.run(
        [*BASTION, "approvers", "add", "--name", "bob", "--operators-file", str(OPERATORS_FILE)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    token = out.strip().splitlines()[-1]
    port = free_port()
    args = [*BASTION, "collector", "--collector-port", str(port), "--data-dir", str(work / "data")]
    with running([*args, "--policies", str(policies)], log=work / "collector.log") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/healthz", timeout=60, proc=proc)
        yield Collector(url, token)


def hold(url: str, amount: int) -> dict[str, Any]:
    """An approval request as a proxy makes it."""
    context = {
        "agent_id": "agent-7",
        "role": "assistant",
        "kind": "mcp",
        "target": "tool:send_money",
        "action": "call",
        "arguments": {"amount": amount, "recipient": "<EMAIL_ADDRESS>"},
        "arguments_clear": {"amount": amount, "recipient": "carol@example.com"},
        "messages": [],
        "rule": "large-payments-need-approval",
        "reason": "rule 'large-payments-need-approval' requires a human's approval",
        "trace_id": "ab" * 16,
        "timeout_seconds": 300,
    }
    return dict(httpx.post(auth=AUTH, url=f"{url}/api/approvals", json=context).json())


def status(url: str, approval_id: str) -> dict[str, Any]:
    return dict(httpx.get(auth=AUTH, url=f"{url}/api/approvals/{approval_id}").json())


def page(collector: Collector, monkeypatch: pytest.MonkeyPatch, token: str | None) -> AppTest:
    monkeypatch.setenv("BASTION_COLLECTOR_URL", collector.url)
    at = AppTest.from_file(APP, default_timeout=30).run()
    if token is not None:
        at.sidebar.text_input(key="token_input").input(token).run()
    at.switch_page("screens/approvals.py").run()
    assert not at.exception, at.exception
    return at


def test_approve_one_with_a_reason(collector: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
    approval = hold(collector.url, 500)
    at = page(collector, monkeypatch, collector.token)
    assert any("agent-7" in m.value and "tool:send_money" in m.value for m in at.markdown)
    assert any('"carol@example.com"' in c.value and '"amount": 500' in c.value for c in at.code)
    at.text_input(key=f"reason_{approval['id']}").input("invoice checked")
    at.button(key=f"approve_{approval['id']}").click().run()
    assert not at.exception
    record = status(collector.url, approval["id"])
    assert (record["status"], record["approver"], record["decision_reason"]) == ("approved", "bob", "invoice checked")
    # the confirmation sits above the tabs (the whole page reran), and the History tab has the decision
    assert f"{approval['id']}: approved by bob." in [s.value for s in at.success]
    assert not any(approval["id"] in s.value for s in at.tabs[0].success)
    (history,) = [d.value.to_dict("records") for d in at.tabs[1].dataframe]
    assert any(r["Id"] == approval["id"] and r["Approver"] == "bob" for r in history)
    at.run()  # shown once
    assert not any(approval["id"] in s.value for s in at.success)


def test_a_decision_in_the_refreshing_list_reruns_the_whole_page(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a browser a click inside the pending fragment reruns only that fragment, but AppTest always
    reruns the whole script; so the click's run is made fragment-only here, as the browser asks for it
    (streamlit is pinned in uv.lock; this reaches into its test runner's RerunData and fragment storage)."""
    approval = hold(collector.url, 900)
    at = page(collector, monkeypatch, collector.token)
    (fragment_id,) = list(at._fragment_storage._fragments)  # the pending list

    def from_the_fragment(**kw: Any) -> RerunData:
        return RerunData(**kw, fragment_id_queue=[fragment_id])

    monkeypatch.setattr(local_script_runner, "RerunData", from_the_fragment)
    at.button(key=f"approve_{approval['id']}").click().run()
    assert not at.exception
    assert f"{approval['id']}: approved by bob." in [s.value for s in at.success]
    (history,) = [d.value.to_dict("records") for d in at.tabs[1].dataframe]  # the whole page ran again
    assert any(r["Id"] == approval["id"] for r in history)


def test_batch_approve_and_deny(collector: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, third = (hold(collector.url, n) for n in (601, 602, 603))
    at = page(collector, monkeypatch, collector.token)
    at.multiselect(key="batch").select(first["id"]).select(second["id"]).run()
    at.button(key="approve_batch").click().run()
    assert not at.exception
    assert [status(collector.url, a["id"])["status"] for a in (first, second, third)] == [
        "approved",
        "approved",
        "pending",
    ]
    at.button(key=f"deny_{third['id']}").click().run()
    assert status(collector.url, third["id"])["status"] == "denied"


def test_without_a_token_nothing_shows_and_viewers_cannot_decide(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    approval = hold(collector.url, 700)
    at = page(collector, monkeypatch, None)
    assert "Sign in" in at.info[0].value and not any("agent-7" in m.value for m in at.markdown)
    at = page(collector, monkeypatch, "bst_an-agent-key")  # agent keys are no operator tokens
    assert "Sign in" in at.info[0].value and not any("agent-7" in m.value for m in at.markdown)
    at = page(collector, monkeypatch, TOKENS["viewer"])
    assert any("agent-7" in m.value for m in at.markdown)
    assert at.button(key=f"approve_{approval['id']}").disabled
    assert not any("carol@example.com" in c.value for c in at.code)  # viewers see the redacted form
    assert "approver or admin token" in at.warning[0].value
    assert status(collector.url, approval["id"])["status"] == "pending"


def test_suspend_and_guide_an_agent(collector: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
    at = page(collector, monkeypatch, collector.token)
    at.text_input(key="intervene_agent").input("agent-9")
    at.text_area(key="intervene_text").input("looping on refunds")
    at.button(key="suspend_agent").click().run()
    assert not at.exception
    state = httpx.get(auth=AUTH, url=f"{collector.url}/api/agents/state").json()["agents"]
    assert state["agent-9"]["suspended"] and state["agent-9"]["reason"] == "looping on refunds"
    at.text_area(key="intervene_text").input("Refunds need a ticket number.")
    at.button(key="guide_agent").click().run()
    at.button(key="resume_agent").click().run()
    state = httpx.get(auth=AUTH, url=f"{collector.url}/api/agents/state").json()["agents"]
    assert not state["agent-9"]["suspended"] and len(state["agent-9"]["guidance"]) == 1
