import json
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider

from bastion import audit_chain, audit_keys, audit_verify, semconv
from bastion.collector import otlp
from bastion.proxy.outbox import Outbox
from bastion.proxy.outbox_tracing import OutboxSpanProcessor, Shipper, audit_record, start_records
from factories.audit import SIGNER

DECIDED = {semconv.BASTION_DECISION: "allow", semconv.BASTION_AGENT_ID: "a"}


def filled(tmp_path: Path, names: list[str], **attributes: str) -> Outbox:
    outbox = Outbox(tmp_path).open()
    provider = TracerProvider()
    provider.add_span_processor(OutboxSpanProcessor(outbox, SIGNER))
    for name in names:
        provider.get_tracer("t").start_span(name, attributes=attributes).end()
    outbox.wait_durable()
    return outbox


def names(body: bytes) -> list[str]:
    request = ExportTraceServiceRequest.FromString(body)
    return [s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def test_decision_spans_are_chained_and_signed_across_restarts(tmp_path: Path) -> None:
    outbox = filled(tmp_path, ["one", "two"], **DECIDED)
    outbox.close()
    outbox = filled(tmp_path, ["three"], **DECIDED)  # a restart continues the chain
    undecided = filled(tmp_path / "other", ["plain"])
    records = [audit_record(r.payload) for r in outbox.read()]
    assert [r["seq"] for r in records if r] == [1, 2, 3]
    report = audit_verify.verify([r for r in records if r], keys={outbox.instance_id: [SIGNER.public_key]})
    assert report.intact
    assert [r.seq for r in undecided.read()] == [0]
    outbox.close()
    undecided.close()


def test_a_record_covers_the_span_as_the_collector_will_store_it(tmp_path: Path) -> None:
    outbox = filled(tmp_path, ["chat"], **DECIDED, **{semconv.GEN_AI_USAGE_INPUT_TOKENS: "12"})
    (stored,) = otlp.rows(ExportTraceServiceRequest.FromString(outbox.read()[0].payload))
    view = audit_chain.SpanView(
        stored.timestamp,
        stored.trace_id,
        stored.span_id,
        stored.span_name,
        stored.service_name,
        stored.duration,
        stored.status_code,
        stored.span_attributes,
    )
    record = json.loads(stored.span_attributes[semconv.BASTION_AUDIT_RECORD])
    assert audit_verify.span_problem(view, [record], {outbox.instance_id: [SIGNER.public_key]}) is None
    outbox.close()


def test_a_head_is_the_signed_position_it_follows_in_the_log(tmp_path: Path) -> None:
    outbox = filled(tmp_path, ["one", "two"], **DECIDED)
    outbox.close()
    outbox = filled(tmp_path, ["bastion audit head"], **{semconv.BASTION_AUDIT_HEAD: ""})
    (span,) = ExportTraceServiceRequest.FromString(outbox.read()[-1].payload).resource_spans[0].scope_spans[0].spans
    head = json.loads(next(kv.value.string_value for kv in span.attributes if kv.key == semconv.BASTION_AUDIT_HEAD))
    assert (head["instance"], head["seq"], head["hash"]) == (outbox.instance_id, 2, outbox.chain_hash)
    assert audit_keys.valid(SIGNER.public_key, head["signature"], "head", outbox.instance_id, 2, outbox.chain_hash)
    outbox.close()


def anchor_of(outbox: Outbox) -> dict[str, object] | None:
    records = dict(start_records(outbox, SIGNER))
    key = json.loads(records["bastion audit key"][semconv.BASTION_AUDIT_KEY])
    assert key["public_key"] == SIGNER.public_key and key["instance"] == outbox.instance_id
    anchor = records.get("bastion audit anchor")
    return json.loads(anchor[semconv.BASTION_AUDIT_ANCHOR]) if anchor else None


def test_a_restart_anchors_at_the_last_record_the_collector_acknowledged(tmp_path: Path) -> None:
    outbox = filled(tmp_path, ["one", "two", "three"], **DECIDED)
    assert anchor_of(outbox) is None  # nothing acknowledged: any store gets the chain from seq 1
    records = outbox.read()
    outbox.acknowledge(records[0].end)  # records 2 and 3 still wait: a new store gets them after seq 1
    anchor = anchor_of(outbox)
    assert anchor is not None and (anchor["seq"], anchor["hash"]) == (1, audit_record(records[0].payload)["hash"])  # type: ignore[index]
    outbox.acknowledge(records[-1].end)
    assert anchor_of(outbox) == {
        "instance": outbox.instance_id,
        "seq": 3,
        "hash": outbox.chain_hash,
        "signature": SIGNER.sign("anchor", outbox.instance_id, 3, outbox.chain_hash),
    }
    outbox.close()


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
