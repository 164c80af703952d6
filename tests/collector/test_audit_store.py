import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider

from bastion import audit_verify, semconv
from bastion.audit_keys import Signer
from bastion.collector.audit_store import AuditStore
from bastion.proxy.outbox import Outbox
from bastion.proxy.outbox_tracing import HeadTicker, OutboxSpanProcessor, start_records
from bastion.settings import CollectorSettings
from factories.audit import SIGNER, key_row
from factories.collector import app_client, decision_span, request, span

PROTOBUF = {"content-type": "application/x-protobuf"}


@pytest.fixture
def client(settings: CollectorSettings) -> Iterator[TestClient]:
    with app_client(replace(settings, flush_interval=0.05)) as c:
        yield c


def proxy_records(tmp_path: Path, calls: int, signer: Signer = SIGNER) -> list[bytes]:
    """What a proxy's outbox holds after its start records, ``calls`` governed calls and one chain head."""
    outbox = Outbox(tmp_path / "outbox").open()
    provider = TracerProvider()
    provider.add_span_processor(OutboxSpanProcessor(outbox, signer))
    tracer = provider.get_tracer("test")
    for name, attributes in start_records(outbox, signer):
        tracer.start_span(name, attributes=attributes).end()
    for i in range(calls):
        tracer.start_span(f"chat {i}", attributes=decision_span(f"agent-{i % 3}")).end()
    HeadTicker(outbox, tracer, 60).record()
    outbox.wait_durable()
    payloads = [r.payload for r in outbox.read()]
    outbox.close()
    return payloads


def chain(client: TestClient, kind: str = "record") -> list[dict[str, Any]]:
    return list(client.get("/api/audit/chain", params={"type": kind}).json()["items"])


def test_re_shipped_spans_and_records_are_stored_once(client: TestClient, tmp_path: Path) -> None:
    payloads = proxy_records(tmp_path, 5)
    assert client.post("/v1/traces", content=b"".join(payloads[:3]), headers=PROTOBUF).status_code == 200
    # A sender that crashed before the acknowledgement sends everything again, then some twice.
    assert client.post("/v1/traces", content=b"".join(payloads), headers=PROTOBUF).status_code == 200
    assert client.post("/v1/traces", content=b"".join(payloads + payloads), headers=PROTOBUF).status_code == 200
    stats = client.get("/api/spans/stats").json()
    assert stats == {"spans": 7, "distinct": 7, "duplicates": []}  # the key, 5 calls, the head
    records, heads = chain(client), chain(client, "head")
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert [(h["seq"], h["hash"]) for h in heads] == [(5, records[-1]["hash"])]
    assert records[0]["agent"] == "agent-0" and records[0]["decision"] == "allow" and records[0]["target"] == "gpt-4o"
    keys, bad = audit_verify.registered_keys(client.get("/api/audit/keys").json()["items"])
    assert audit_verify.verify(records, heads, keys=keys).intact and not bad


def test_the_first_key_of_an_instance_is_kept_and_a_second_is_stored_beside_it(
    client: TestClient, tmp_path: Path
) -> None:
    other = Signer.generate()
    for signer in (SIGNER, other, SIGNER):  # an instance restarted with a replaced key, then the first again
        key = span(attributes={semconv.BASTION_AUDIT_KEY: json.dumps(key_row("i1", signer))})
        client.post("/v1/traces", content=request(key).SerializeToString(), headers=PROTOBUF)
    forged = span(attributes={semconv.BASTION_AUDIT_KEY: '{"instance":"x","public_key":"00","signature":"00"}'})
    client.post("/v1/traces", content=request(forged).SerializeToString(), headers=PROTOBUF)
    items = client.get("/api/audit/keys").json()["items"]
    assert [k["public_key"] for k in items] == [SIGNER.public_key, other.public_key]  # first seen first
    assert items[0]["first_seen"].endswith("Z")


def test_each_audit_row_says_whether_it_matches_its_signed_record(client: TestClient, tmp_path: Path) -> None:
    client.post("/v1/traces", content=b"".join(proxy_records(tmp_path, 2)), headers=PROTOBUF)
    unsigned = span(attributes=decision_span("sdk-exporter"))  # any OTLP sender can write a decision span
    client.post("/v1/traces", content=request(unsigned).SerializeToString(), headers=PROTOBUF)
    items = client.get("/api/audit", params={"limit": 10}).json()["items"]
    flags = {(i["agent_id"], i["verified"], i["unverified_reason"]) for i in items}
    assert flags == {
        ("agent-0", True, None),
        ("agent-1", True, None),
        ("sdk-exporter", False, "no signed audit record links this decision"),
    }


def test_decision_spans_page_on_with_every_attribute(client: TestClient, tmp_path: Path) -> None:
    client.post("/v1/traces", content=b"".join(proxy_records(tmp_path, 5)), headers=PROTOBUF)
    first = client.get("/api/audit/spans", params={"limit": 3}).json()
    second = client.get("/api/audit/spans", params={"limit": 3, **first["next"]}).json()
    spans = first["items"] + second["items"]
    assert [s["attributes"][semconv.BASTION_AGENT_ID] for s in spans] == [f"agent-{i % 3}" for i in range(5)]
    assert second["next"] is None and all(semconv.BASTION_AUDIT_RECORD in s["attributes"] for s in spans)


def test_chain_pages_follow_on(client: TestClient, tmp_path: Path) -> None:
    client.post("/v1/traces", content=b"".join(proxy_records(tmp_path, 7)), headers=PROTOBUF)
    first = client.get("/api/audit/chain", params={"limit": 4}).json()
    second = client.get("/api/audit/chain", params={"limit": 4, **first["next"]}).json()
    assert [r["seq"] for r in first["items"] + second["items"]] == list(range(1, 8))
    assert second["next"] is None


def test_ttls_are_applied_once_and_can_be_changed(client: TestClient) -> None:
    audit: AuditStore = client.app.state.audit  # type: ignore[attr-defined]

    def engine(table: str) -> str:
        sql = "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {name:String}"
        return str(audit.store.rows(sql, {"db": audit.store.database, "name": table})[0][0])

    assert "TTL toDateTime(Timestamp) + toIntervalDay(30)" in engine("otel_traces")
    assert "TTL toDateTime(Start) + toIntervalDay(30)" in engine("otel_traces_trace_id_ts")
    assert "TTL toDateTime(Timestamp) + toIntervalDay(365)" in engine("audit_chain")
    audit.apply_ttl(30, 365)  # idempotent
    audit.apply_ttl(7, 0)
    assert "toIntervalDay(7)" in engine("otel_traces") and " TTL " not in engine("audit_chain")


def test_a_full_buffer_answers_429_instead_of_growing(settings: CollectorSettings) -> None:
    release = threading.Event()
    with app_client(replace(settings, batch_rows=2, flush_interval=0.01)) as client:
        audit: AuditStore = client.app.state.audit  # type: ignore[attr-defined]
        real = audit.insert_spans

        def slow(rows: Any) -> None:
            release.wait(10)
            real(rows)

        audit.insert_spans = slow  # type: ignore[method-assign]
        first = threading.Thread(
            target=client.post,
            args=("/v1/traces",),
            kwargs={"content": request(*[span() for _ in range(15)]).SerializeToString(), "headers": PROTOBUF},
        )
        first.start()
        time.sleep(0.5)  # the first 15 rows are being written
        refused = client.post(
            "/v1/traces", content=request(*[span() for _ in range(10)]).SerializeToString(), headers=PROTOBUF
        )
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        release.set()
        first.join()
        assert client.get("/api/spans/stats").json()["spans"] == 15


def test_the_decision_attributes_carry_the_chain(tmp_path: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    payload = proxy_records(tmp_path, 1)[1]  # after the key
    (proto,) = ExportTraceServiceRequest.FromString(payload).resource_spans[0].scope_spans[0].spans
    attrs = {kv.key: kv.value.string_value for kv in proto.attributes}
    assert attrs[semconv.BASTION_AUDIT_SEQ] == "1" and len(attrs[semconv.BASTION_AUDIT_HASH]) == 64


def test_time_windows_stay_tight() -> None:
    from bastion.collector.audit_store import windows

    s = 10**9
    assert windows([]) == []
    assert windows([1 * s, 2 * s, 3 * s]) == [(1 * s, 3 * s)]
    assert windows([1 * s, 100 * s, 101 * s]) == [(1 * s, 1 * s), (100 * s, 101 * s)]  # a gap
    assert len(windows([i * s for i in range(0, 200, 4)])) == 4  # no window wider than 60 s
