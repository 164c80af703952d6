"""Tracing: one span per call continuing the agent's trace, per CONNECT and per TCP relay, recording
what every addon decided; telemetry never breaks traffic."""

from typing import Any, cast

from mitmproxy import http
from mitmproxy.test import tflow
from opentelemetry.trace import StatusCode, Tracer

from bastion import semconv
from bastion.proxy.decision import allow, deny
from bastion.proxy.state import INTERNAL, state
from factories.addons import AGENT, call_flow, run, spans, tracer, tracing
from factories.proxy import REGULAR, chat_body, flow

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
ALLOWED = allow("assistant-scripted-models", "allowed", "v1")


def traced(f: http.HTTPFlow, response: http.Response | None = None, hook: str = "response") -> list[Any]:
    t, exporter = tracer()
    addon = tracing(t)
    run(addon, f, "requestheaders")
    f.response = response
    run(addon, f, hook)
    return spans(exporter)


def test_a_call_continues_the_agents_trace_and_records_call_and_decision() -> None:
    f = call_flow(body=chat_body(stream=True), decision=ALLOWED, headers={"traceparent": PARENT})
    state(f).usage.update({"model": "scripted-small-2", "usage": {"prompt_tokens": 5, "completion_tokens": 7}})
    [span] = traced(f, http.Response.make(200))
    assert span.name == "chat scripted-small" and f"{span.context.trace_id:032x}" == TRACE_ID
    assert f"{span.parent.span_id:016x}" == "b7ad6b7169203331"
    # Upstream sees the proxy's span as the parent, in the same trace.
    assert f.request.headers["traceparent"] == f"00-{TRACE_ID}-{span.context.span_id:016x}-01"
    attrs = dict(span.attributes)
    assert attrs[semconv.BASTION_ROUTE] == "openai" and attrs[semconv.BASTION_AGENT_ID] == AGENT.agent_id
    assert attrs[semconv.GEN_AI_REQUEST_MODEL] == "scripted-small" and attrs[semconv.GEN_AI_REQUEST_STREAM] is True
    assert attrs[semconv.BASTION_DECISION] == "allow" and attrs[semconv.BASTION_POLICY_RULE] == ALLOWED.rule
    assert attrs[semconv.GEN_AI_RESPONSE_MODEL] == "scripted-small-2" and attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 7
    assert attrs[semconv.HTTP_RESPONSE_STATUS_CODE] == 200 and semconv.ERROR_TYPE not in attrs


def test_a_refusal_records_its_code_and_the_addons_own_attributes() -> None:
    f = call_flow(decision=deny("no-large-models", "denied"))
    state(f).attributes["bastion.test"] = "kept"
    refusal = http.Response.make(403, b"{}", {"x-bastion-error": "policy_denied"})
    [span] = traced(f, refusal)
    attrs = dict(span.attributes)
    assert attrs[semconv.ERROR_TYPE] == "policy_denied" and attrs[semconv.BASTION_DECISION] == "deny"
    assert attrs["bastion.test"] == "kept" and span.status.status_code is StatusCode.UNSET


def test_upstream_failures_mark_the_span_as_an_error() -> None:
    [server_error] = traced(call_flow(decision=ALLOWED), http.Response.make(502))
    assert server_error.status.status_code is StatusCode.ERROR
    broken = call_flow(decision=ALLOWED)
    broken.error = tflow.terr("connection reset")
    [lost] = traced(broken, hook="error")
    assert lost.status.status_code is StatusCode.ERROR
    assert dict(lost.attributes)[semconv.ERROR_TYPE] == "connection_error"


def test_internal_calls_get_no_span() -> None:
    f = flow("/healthz", method="GET")
    f.metadata[INTERNAL] = True
    assert traced(f, http.Response.make(200)) == [] and state(f).span is None


class BrokenTracer:
    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("exporter misconfigured")


def test_a_failing_tracer_never_breaks_the_call() -> None:
    addon = tracing(cast(Tracer, BrokenTracer()))
    f = call_flow(decision=ALLOWED, headers={"traceparent": PARENT})
    connect = flow("", method="CONNECT", host="db.example", port=443, mode=REGULAR)
    state(connect).decision = ALLOWED
    relay = tflow.ttcpflow()
    run(addon, f, "requestheaders", "response")
    run(addon, connect, "http_connect")
    run(addon, relay, "tcp_start", "tcp_end")
    assert f.response is None and f.request.headers["traceparent"] == PARENT


def tunnel(t: Tracer, decided: bool) -> Any:
    relay = tflow.ttcpflow()
    state(relay).decision = allow("db-over-tcp", "allowed") if decided else None
    run(tracing(t), relay, "tcp_start", "tcp_end")
    return relay


def test_connects_and_tcp_relays_get_their_own_spans() -> None:
    t, exporter = tracer()
    connect = flow("", method="CONNECT", host="db.example", port=443, mode=REGULAR)
    undecided = flow("", method="CONNECT", host="db.example", port=443, mode=REGULAR)
    state(connect).decision, state(connect).identity = ALLOWED, AGENT
    run(tracing(t), connect, "http_connect")
    run(tracing(t), undecided, "http_connect")  # decided later, by Egress, in its own hook
    tunnel(t, decided=True)
    tunnel(t, decided=False)
    [connect_attrs] = [dict(s.attributes) for s in spans(exporter) if s.name == "CONNECT db.example:443"]
    assert connect_attrs[semconv.BASTION_CALL_KIND] == semconv.KIND_CONNECT
    assert connect_attrs[semconv.BASTION_AGENT_ID] == "agent-1" and connect_attrs[semconv.BASTION_DECISION] == "allow"
    relays = [dict(s.attributes) for s in spans(exporter) if s.name.startswith("tcp ")]
    assert len(spans(exporter)) == 3
    assert [a.get(semconv.ERROR_TYPE) for a in relays] == [None, "tcp_refused"]
    assert all(a[semconv.BASTION_CALL_KIND] == semconv.KIND_TCP for a in relays)
