"""The dashboard pages (and their client) against a real collector holding real OpenTelemetry spans."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from streamlit.testing.v1 import AppTest

from bastion import semconv as sc
from bastion.dashboard import views
from bastion.dashboard.client import CollectorClient, CollectorError
from support import AUTH, BASTION, PROXY_TOKEN, ROOT, TOKENS, free_port, running, wait_for_http

PAGER_SPANS = 12


@dataclass(frozen=True)
class Exported:
    """The collector's URL and the traces exported to it."""

    url: str
    allowed_trace: str  # assistant-bot, scripted-small: a server span with an upstream child span
    http_trace: str  # crawler, plain HTTP call, allowed
    denied_trace: str  # assistant-bot, scripted-large, denied (exported last, so newest)
    # 12 more allowed calls by the agent "pager", two days old (outside the default last hour)
    # an MCP tools/call by "payer", held and approved by bob, two hours old


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    work = tmp_path_factory.mktemp("collector")
    port = free_port()
    args = [*BASTION, "collector", "--collector-port", str(port), "--data-dir", str(work / "data")]
    with running([*args, "--flush-interval", "0.2"], log=work / "collector.log") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/healthz", timeout=60, proc=proc)
        exported = export_spans(url)
        wait_for_audit(url, count=3 + PAGER_SPANS + 1)
        yield exported


@pytest.fixture
def collector_env(collector: Exported, monkeypatch: pytest.MonkeyPatch) -> Exported:
    monkeypatch.setenv("BASTION_COLLECTOR_URL", collector.url)
    monkeypatch.setenv("BASTION_TOKEN", TOKENS["viewer"])  # signs the dashboard in, as `make demo` does
    return collector


def export_spans(url: str) -> Exported:
    """Spans shaped like the proxy's, sent with the OpenTelemetry SDK over OTLP/HTTP."""
    provider = TracerProvider(resource=Resource.create({"service.name": sc.SERVICE_NAME_PROXY}))
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers={"authorization": f"Bearer {PROXY_TOKEN}"})
        )
    )
    tracer = provider.get_tracer("tests.dashboard")
    assistant = {sc.BASTION_AGENT_ID: "assistant-bot", sc.BASTION_AGENT_ROLE: "assistant"}
    model_call = {
        **assistant,
        sc.BASTION_CALL_KIND: sc.KIND_MODEL,
        sc.GEN_AI_OPERATION_NAME: sc.OPERATION_CHAT,
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.BASTION_POLICY_VERSION: "test-v1",
        sc.HTTP_REQUEST_METHOD: "POST",
        sc.URL_PATH: "/openai/v1/chat/completions",
    }
    with tracer.start_as_current_span(
        "chat scripted-small",
        kind=SpanKind.SERVER,
        attributes={
            **model_call,
            sc.GEN_AI_REQUEST_MODEL: "scripted-small",
            sc.GEN_AI_RESPONSE_MODEL: "scripted-small",
            sc.BASTION_DECISION: "allow",
            sc.BASTION_POLICY_RULE: "assistant-scripted-models",
            sc.GEN_AI_USAGE_INPUT_TOKENS: 12,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 7,
            sc.HTTP_RESPONSE_STATUS_CODE: 200,
        },
    ) as allowed:
        allowed.add_event("bastion.policy.decided", {sc.BASTION_POLICY_RULE: "assistant-scripted-models"})
        with tracer.start_as_current_span(
            "POST /v1/chat/completions",
            kind=SpanKind.CLIENT,
            attributes={sc.SERVER_ADDRESS: "127.0.0.1", sc.HTTP_RESPONSE_STATUS_CODE: 200},
        ):
            time.sleep(0.002)
    time.sleep(0.01)
    with tracer.start_as_current_span(
        "GET example.org",
        kind=SpanKind.SERVER,
        attributes={
            sc.BASTION_AGENT_ID: "crawler",
            sc.BASTION_AGENT_ROLE: "analyst",
            sc.BASTION_CALL_KIND: sc.KIND_HTTP,
            sc.GEN_AI_OPERATION_NAME: sc.OPERATION_HTTP,
            sc.BASTION_DECISION: "allow",
            sc.BASTION_POLICY_RULE: "analyst-http",
            sc.HTTP_RESPONSE_STATUS_CODE: 200,
        },
    ) as http_call:
        pass
    time.sleep(0.01)
    with tracer.start_as_current_span(
        "chat scripted-large",
        kind=SpanKind.SERVER,
        attributes={
            **model_call,
            sc.GEN_AI_REQUEST_MODEL: "scripted-large",
            sc.BASTION_DECISION: "deny",
            sc.BASTION_POLICY_RULE: "no-large-models",
            sc.HTTP_RESPONSE_STATUS_CODE: 403,
            sc.ERROR_TYPE: "policy_denied",
        },
    ) as denied:
        denied.set_status(Status(StatusCode.ERROR, "denied by no-large-models"))
    two_days_ago = time.time_ns() - 2 * 86_400 * 10**9
    pager = {sc.BASTION_AGENT_ID: "pager", sc.BASTION_CALL_KIND: sc.KIND_MODEL, sc.BASTION_DECISION: "allow"}
    for n in range(PAGER_SPANS):
        start = two_days_ago + n * 10**6
        tracer.start_span(f"pager {n}", start_time=start, attributes=pager).end(end_time=start + 10**5)
    two_hours_ago = time.time_ns() - 2 * 3600 * 10**9
    approved_tool_call = {
        sc.BASTION_AGENT_ID: "payer",
        sc.BASTION_CALL_KIND: sc.KIND_MCP,
        sc.GEN_AI_OPERATION_NAME: sc.OPERATION_EXECUTE_TOOL,
        sc.MCP_METHOD_NAME: "tools/call",
        sc.GEN_AI_TOOL_NAME: "send_money",
        sc.BASTION_DECISION: "allow",
        sc.BASTION_POLICY_RULE: "large-payments-need-approval",
        sc.BASTION_APPROVAL_STATUS: "approved",
        sc.BASTION_APPROVAL_APPROVER: "bob",
    }
    tracer.start_span("tools/call send_money", start_time=two_hours_ago, attributes=approved_tool_call).end(
        end_time=two_hours_ago + 10**6
    )
    provider.shutdown()
    return Exported(
        url=url,
        allowed_trace=f"{allowed.get_span_context().trace_id:032x}",
        http_trace=f"{http_call.get_span_context().trace_id:032x}",
        denied_trace=f"{denied.get_span_context().trace_id:032x}",
    )


def wait_for_audit(url: str, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(httpx.get(auth=AUTH, url=f"{url}/api/audit", timeout=5).json()["items"]) >= count:
            return
        time.sleep(0.1)
    raise TimeoutError(f"the collector did not list {count} audit records within {timeout}s")


# The client


def test_client_reads_the_audit_api(collector: Exported) -> None:
    client = CollectorClient(collector.url, token=TOKENS["viewer"])
    assert client.health()
    first = client.audit(limit=1)
    assert [i["trace_id"] for i in first["items"]] == [collector.denied_trace]
    assert first["next_offset"] == 1
    second = client.audit(limit=1, offset=1)
    assert [i["trace_id"] for i in second["items"]] == [collector.http_trace]
    denied = client.audit(decision="deny", since=datetime.now(UTC) - timedelta(hours=1))["items"]
    assert [(i["agent_id"], i["rule"], i["http_status"]) for i in denied] == [("assistant-bot", "no-large-models", 403)]
    assert client.audit(until=datetime.now(UTC) - timedelta(days=3))["items"] == []
    old = client.audit(until=datetime.now(UTC) - timedelta(days=1), limit=100)["items"]
    assert {i["agent_id"] for i in old} == {"pager"} and len(old) == PAGER_SPANS


def test_client_reads_a_trace(collector: Exported) -> None:
    client = CollectorClient(collector.url, token=TOKENS["viewer"])
    trace = client.trace(collector.allowed_trace)
    assert trace is not None
    assert {s["span_name"] for s in trace["spans"]} == {"chat scripted-small", "POST /v1/chat/completions"}
    assert client.trace("0" * 32) is None


def test_client_reports_an_unreachable_collector() -> None:
    client = CollectorClient(f"http://127.0.0.1:{free_port()}")
    assert not client.health()
    with pytest.raises(CollectorError, match="Cannot reach the collector"):
        client.audit()


def test_client_takes_its_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_COLLECTOR_URL", "http://127.0.0.1:1234/")
    assert CollectorClient().base_url == "http://127.0.0.1:1234"
    monkeypatch.delenv("BASTION_COLLECTOR_URL")
    assert CollectorClient().base_url == "http://127.0.0.1:4318"


# The pages

APP = ROOT / "src" / "bastion" / "dashboard" / "app.py"


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=30)


def audit_page() -> AppTest:
    """The app opened on the audit trail (the overview is the app's default page)."""
    at = app().run()
    at.switch_page("screens/audit.py")
    return at.run()


def audit_table(at: AppTest) -> list[dict[str, Any]]:
    assert not at.exception, at.exception
    rows: list[dict[str, Any]] = at.dataframe[0].value.to_dict("records")
    return rows


def test_audit_page_lists_decisions_newest_first(collector_env: Exported) -> None:
    at = audit_page()
    rows = audit_table(at)
    assert [r["Trace"] for r in rows] == [
        collector_env.denied_trace,
        collector_env.http_trace,
        collector_env.allowed_trace,
    ]
    denied, http_call, allowed = rows
    assert (denied["Agent"], denied["Decision"], denied["Rule"]) == ("assistant-bot", "⛔ deny", "no-large-models")
    assert (denied["Model"], denied["HTTP"]) == ("scripted-large", "403")
    assert (http_call["Agent"], http_call["Kind"], http_call["Operation"]) == ("crawler", "http", "http")
    assert (allowed["Decision"], allowed["Tokens in"], allowed["Tokens out"]) == ("✅ allow", "12", "7")
    assert (http_call["Model"], http_call["Tokens in"], http_call["Duration (ms)"] != "") == ("", "", True)
    assert all(isinstance(v, str) and v not in ("None", "nan") for r in rows for v in r.values())
    assert "connected" in at.sidebar.caption[0].value


def test_audit_page_marks_records_without_a_signed_link(collector_env: Exported) -> None:
    at = audit_page()  # these spans came straight from an SDK exporter, not through a proxy's signed chain
    assert {r["Audit"] for r in audit_table(at)} == {views.UNVERIFIED}
    warning = at.warning[0].value
    assert warning.startswith("3 of these records do not match a signed audit link")
    assert f"trace {collector_env.denied_trace}: no signed audit record links this decision" in warning


@pytest.mark.parametrize(
    ("widget", "value", "expected"),
    [
        ("audit_decision", "deny", ["denied_trace"]),
        ("audit_kind", "http", ["http_trace"]),
        ("audit_agent", "assistant-bot", ["denied_trace", "allowed_trace"]),
        ("audit_decision", "review", []),
    ],
)
def test_audit_filters(collector_env: Exported, widget: str, value: str, expected: list[str]) -> None:
    at = audit_page()
    if widget == "audit_agent":
        at.text_input(key=widget).input(value)
    else:
        at.selectbox(key=widget).select(value)
    at.run()
    if expected:
        assert [r["Trace"] for r in audit_table(at)] == [getattr(collector_env, e) for e in expected]
    else:
        assert not at.dataframe
        assert at.info[0].value == "No audit records match these filters."


def test_audit_custom_time_range_in_the_past_is_empty(collector_env: Exported) -> None:
    at = audit_page()
    at.selectbox(key="audit_range").select("Custom").run()
    assert len(audit_table(at)) == 4  # the last day: the three calls and the approved tool call
    past = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=3)
    at.datetime_input(key="audit_from").set_value(past - timedelta(days=1))
    at.datetime_input(key="audit_to").set_value(past)
    at.run()
    assert not at.exception
    assert at.info[0].value == "No audit records match these filters."


def test_an_approved_tool_call_names_its_tool_and_its_approver(collector_env: Exported) -> None:
    at = audit_page()
    at.selectbox(key="audit_range").select("Last day")
    at.text_input(key="audit_agent").input("payer")
    at.run()
    (row,) = audit_table(at)
    assert (row["Operation"], row["Decision"]) == ("execute_tool send_money", "✅ approved by bob")
    assert (row["Role"], row["Model"], row["Tokens in"], row["HTTP"]) == ("", "", "", "")


def test_audit_pages_through_older_records(collector_env: Exported) -> None:
    at = audit_page()
    at.selectbox(key="audit_range").select("Last week")
    at.text_input(key="audit_agent").input("pager")
    at.selectbox(key="audit_page_size").select(10)
    at.run()
    assert [r["Agent"] for r in audit_table(at)] == ["pager"] * 10
    assert audit_table(at)[0]["Time (UTC)"] > audit_table(at)[-1]["Time (UTC)"]
    assert at.button(key="audit_newer").disabled

    at.button(key="audit_older").click().run()
    assert len(audit_table(at)) == 2
    assert at.caption[0].value.startswith("Records 11–12, newest first.")
    assert at.button(key="audit_older").disabled

    at.button(key="audit_newer").click().run()
    assert len(audit_table(at)) == 10
    at.button(key="audit_older").click().run()
    at.selectbox(key="audit_decision").select("allow").run()  # a new filter starts at the newest again
    assert len(audit_table(at)) == 10


def test_selecting_a_row_leads_to_its_trace(collector_env: Exported) -> None:
    at = audit_page()
    rows = audit_table(at)
    index = [r["Trace"] for r in rows].index(collector_env.allowed_trace)
    at.session_state["audit_table"] = {"selection": {"rows": [index], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    link = at.page_link[0]
    assert link.label == f"Open trace {collector_env.allowed_trace}"
    assert link.proto.query_string == f"trace_id={collector_env.allowed_trace}"

    at.query_params["trace_id"] = collector_env.allowed_trace
    at.switch_page("screens/trace.py").run()
    assert not at.exception
    assert at.title[0].value == "Trace"
    assert [m.value for m in at.metric] == ["2", "1", "allow"]


def test_trace_page_shows_spans_attributes_and_events(collector_env: Exported) -> None:
    at = app().run()
    at.query_params["trace_id"] = collector_env.allowed_trace
    at.switch_page("screens/trace.py").run()
    assert not at.exception
    overview = at.dataframe[0].value.to_dict("records")
    assert [r["Span"].strip("\u2003↳ ") for r in overview] == ["chat scripted-small", "POST /v1/chat/completions"]
    assert overview[0]["Decision"] == "✅ allow"
    labels = [e.label for e in at.expander]
    assert labels[0].startswith("chat scripted-small · bastion-proxy")
    assert labels[1].startswith("\u2003POST /v1/chat/completions")
    root, child = at.expander
    root_json = [json.loads(j.value) for j in root.json]
    assert root_json[0][sc.BASTION_POLICY_RULE] == "assistant-scripted-models"
    assert root_json[0][sc.GEN_AI_USAGE_INPUT_TOKENS] == "12"
    assert root_json[1] == {sc.BASTION_POLICY_RULE: "assistant-scripted-models"}  # the event's attributes
    assert root_json[2]["service.name"] == sc.SERVICE_NAME_PROXY
    assert any("bastion.policy.decided" in m.value for m in root.markdown)
    assert json.loads(child.json[0].value)[sc.SERVER_ADDRESS] == "127.0.0.1"


def test_trace_page_takes_a_typed_trace_id(collector_env: Exported) -> None:
    at = app().run()
    at.switch_page("screens/trace.py").run()
    assert at.info[0].value == "Enter a trace id, or select a row in the audit trail."
    at.text_input[0].input(collector_env.denied_trace.upper()).run()
    assert not at.exception
    assert [m.value for m in at.metric] == ["1", "1", "deny"]
    assert at.query_params["trace_id"] == collector_env.denied_trace
    assert "Status message: denied by no-large-models" in [m.value for m in at.expander[0].markdown]


@pytest.mark.parametrize(
    ("trace_id", "message"),
    [
        ("f" * 32, f"The collector has no spans for trace {'f' * 32}."),
        ("not-a-trace", "'not-a-trace' is not a trace id: it must be 32 hex characters."),
    ],
)
def test_trace_page_unknown_or_malformed_id(collector_env: Exported, trace_id: str, message: str) -> None:
    at = app().run()
    at.query_params["trace_id"] = trace_id
    at.switch_page("screens/trace.py").run()
    assert not at.exception
    assert at.warning[0].value == message


def test_unreachable_collector_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("BASTION_COLLECTOR_URL", url)
    monkeypatch.setenv("BASTION_TOKEN", TOKENS["viewer"])
    at = audit_page()  # the audit page
    assert not at.exception
    assert at.error[0].value.startswith(f"Cannot reach the collector at {url}")
    assert at.sidebar.caption[0].value == f"Collector: {url} (unreachable)"
    at.query_params["trace_id"] = "a" * 32
    at.switch_page("screens/trace.py").run()
    assert not at.exception and at.error[0].value.startswith(f"Cannot reach the collector at {url}")


def test_the_pages_show_nothing_without_a_known_token(collector: Exported, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_COLLECTOR_URL", collector.url)
    at = app().run()
    assert "Sign in" in at.info[0].value and not at.dataframe
    at.sidebar.text_input(key="token_input").input(TOKENS["viewer"]).run()
    assert audit_table(at)


def test_alerts_page_shows_rejected_policy_edits(collector_env: Exported) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": sc.SERVICE_NAME_PROXY}))
    proxy = {"authorization": f"Bearer {PROXY_TOKEN}"}
    exporter = OTLPSpanExporter(endpoint=f"{collector_env.url}/v1/traces", headers=proxy)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    alert = {
        sc.BASTION_ALERT_TYPE: sc.ALERT_POLICY_REJECTED,
        sc.BASTION_ALERT_MESSAGE: "policy.csv: rule 3: effect must be allow, deny or review",
        sc.BASTION_POLICY_VERSION: "v-still-serving",
    }
    with provider.get_tracer("tests.dashboard").start_as_current_span("policy rejected", attributes=alert):
        pass
    provider.shutdown()
    deadline = time.monotonic() + 15
    while not CollectorClient(collector_env.url, token=TOKENS["viewer"]).alerts() and time.monotonic() < deadline:
        time.sleep(0.2)
    at = app().run()
    at.switch_page("screens/alerts.py").run()
    assert not at.exception, at.exception
    (row,) = at.dataframe[0].value.to_dict("records")
    assert (row["type"], row["policy still serving"]) == ("policy_rejected", "v-still-serving")
    assert "effect must be allow, deny or review" in row["message"]
