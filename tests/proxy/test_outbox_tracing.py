import json
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider

from bastion import audit_chain, semconv
from bastion.proxy.outbox import Outbox
from bastion.proxy.outbox_tracing import OutboxSpanProcessor, Shipper, chain_fields


def filled(tmp_path: Path, names: list[str], **attributes: str) -> Outbox:
    outbox = Outbox(tmp_path).open()
    provider = TracerProvider()
    provider.add_span_processor(OutboxSpanProcessor(outbox))
    for name in names:
        provider.get_tracer("t").start_span(name, attributes=attributes).end()
    outbox.wait_durable()
    return outbox


def names(body: bytes) -> list[str]:
    request = ExportTraceServiceRequest.FromString(body)
    return [s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def test_decision_spans_are_chained_across_restarts(tmp_path: Path) -> None:
    decided = {semconv.BASTION_DECISION: "allow", semconv.BASTION_AGENT_ID: "a"}
    outbox = filled(tmp_path, ["one", "two"], **decided)
    outbox.close()
    outbox = filled(tmp_path, ["three"], **decided)  # a restart continues the chain
    undecided = filled(tmp_path / "other", ["plain"])
    records = []
    for record in outbox.read():
        (span,) = ExportTraceServiceRequest.FromString(record.payload).resource_spans[0].scope_spans[0].spans
        attrs = {kv.key: kv.value.string_value for kv in span.attributes}
        records.append(json.loads(attrs[semconv.BASTION_AUDIT_RECORD]))
    assert [r["seq"] for r in records] == [1, 2, 3] and audit_chain.verify(records).intact
    assert [r.seq for r in undecided.read()] == [0]
    outbox.close()
    undecided.close()


def test_the_shipper_retries_until_acknowledged_then_prunes(tmp_path: Path) -> None:
    outbox = filled(tmp_path, ["a", "b", "c"])
    answers = [503, 429, 200]
    bodies: list[bytes] = []

    def collector(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(answers.pop(0))

    shipper = Shipper(outbox, "http://collector", transport=httpx.MockTransport(collector))
    records = outbox.read()
    assert not shipper.ship(records) and not shipper.ship(records)
    assert outbox.read() == records  # nothing acknowledged yet
    assert shipper.ship(records)
    assert names(bodies[-1]) == ["a", "b", "c"]  # one request for the batch
    assert outbox.read() == [] and not outbox.unacknowledged()
    shipper.stop()
    outbox.close()


def test_a_record_the_collector_refuses_for_good_does_not_hold_back_the_rest(tmp_path: Path) -> None:
    outbox = filled(tmp_path, ["good", "bad", "fine"])
    stored: list[str] = []

    def collector(request: httpx.Request) -> httpx.Response:
        spans = names(request.content)
        if "bad" in spans:
            return httpx.Response(400)
        stored.extend(spans)
        return httpx.Response(200)

    shipper = Shipper(outbox, "http://collector", transport=httpx.MockTransport(collector))
    assert shipper.ship(outbox.read())
    assert stored == ["good", "fine"] and outbox.read() == []
    shipper.stop()
    outbox.close()


def test_a_tunnel_record_targets_host_and_port() -> None:
    provider = TracerProvider()
    tunnel = {semconv.SERVER_ADDRESS: "127.0.0.1", semconv.SERVER_PORT: 4318, semconv.BASTION_DECISION: "deny"}
    call = {semconv.SERVER_ADDRESS: "api.example.com", semconv.URL_PATH: "/v1/x", semconv.BASTION_DECISION: "deny"}
    spans = []
    for attributes in (tunnel, call):
        span = provider.get_tracer("t").start_span("s", attributes=attributes)
        span.end()
        spans.append(span)
    assert [chain_fields(s)["target"] for s in spans] == ["127.0.0.1:4318", "api.example.com/v1/x"]  # type: ignore[arg-type]
