import asyncio
import gzip
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from bastion.collector.app import Collector, create_app
from bastion.settings import CollectorSettings
from factories.collector import app_client, decision_span, request, span, to_json, trace_id
from support import BASTION, PROXY_TOKEN, collector_api, free_port, running, wait_for_http

PROTOBUF = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}


@pytest.fixture
def client(settings: CollectorSettings) -> Iterator[TestClient]:
    with app_client(replace(settings, flush_interval=0.05)) as c:
        yield c


def collector(client: TestClient) -> Collector:
    parts: Collector = client.app.state.collector  # type: ignore[attr-defined]
    return parts


def export(client: TestClient, *spans: Any, **kw: Any) -> Any:
    return client.post("/v1/traces", content=request(*spans, **kw).SerializeToString(), headers=PROTOBUF)


def test_a_protobuf_export_is_acknowledged_then_listed_in_the_audit(client: TestClient) -> None:
    response = export(client, span(attributes=decision_span("a1")), span(attributes={"no": "decision"}))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    assert ExportTraceServiceResponse.FromString(response.content) == ExportTraceServiceResponse()

    page = client.get("/api/audit").json()
    assert [item["agent_id"] for item in page["items"]] == ["a1"]
    assert (page["limit"], page["offset"], page["next_offset"]) == (50, 0, None)


def test_json_with_hex_ids_and_gzip_are_accepted(client: TestClient) -> None:
    root = span("root")
    body = to_json(request(root, span("child", trace=root.trace_id, parent=root.span_id)))
    response = client.post("/v1/traces", content=body, headers=JSON)
    assert (response.status_code, response.json()) == (200, {})
    assert response.headers["content-type"] == "application/json"
    gzipped = gzip.compress(to_json(request(span("late", trace=root.trace_id))))
    assert client.post("/v1/traces", content=gzipped, headers={**JSON, "content-encoding": "gzip"}).is_success

    trace = client.get(f"/api/traces/{root.trace_id.hex().upper()}").json()
    assert trace["trace_id"] == root.trace_id.hex()
    assert [s["span_name"] for s in trace["spans"]] == ["root", "child", "late"]
    assert trace["spans"][1]["parent_span_id"] == root.span_id.hex()


@pytest.mark.parametrize(
    ("headers", "body", "status", "words"),
    [
        (PROTOBUF, b"\xff\xff\xff", 400, "not a valid protobuf"),
        (JSON, b"{", 400, "not valid JSON"),
        ({**PROTOBUF, "content-encoding": "gzip"}, b"nope", 400, "not valid gzip"),
        ({"content-type": "text/plain"}, b"x", 415, "Content-Type 'text/plain' is not supported"),
        ({**PROTOBUF, "content-encoding": "br"}, b"x", 415, "Content-Encoding 'br'"),
    ],
)
def test_bad_exports_answer_json_errors_that_name_the_problem(
    client: TestClient, headers: dict[str, str], body: bytes, status: int, words: str
) -> None:
    response = client.post("/v1/traces", content=body, headers=headers)
    assert response.status_code == status
    assert words in response.json()["error"]["message"]


def test_an_export_the_store_cannot_take_gets_503(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(rows: object) -> None:
        raise ConnectionError("store down")

    monkeypatch.setattr(collector(client).store, "insert_spans", down)
    response = export(client, span())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "unavailable" in response.json()["error"]["message"]


def test_audit_filters_and_pages(client: TestClient) -> None:
    base = 1_800_000_000 * 10**9
    for n, (agent, decision) in enumerate([("a1", "allow"), ("a2", "deny"), ("a1", "deny")]):
        export(client, span(start=base + n * 10**9, attributes=decision_span(agent, decision)))

    def agents(query: str) -> list[str]:
        return [i["agent_id"] for i in client.get(f"/api/audit?{query}").json()["items"]]

    assert agents("") == ["a1", "a2", "a1"]
    assert agents("agent=a1&decision=deny") == ["a1"]
    assert agents("agent=&kind=model") == ["a1", "a2", "a1"]
    assert agents("since=2027-01-15T08:00:01Z&until=2027-01-15T08:00:01.5") == ["a2"]
    page = client.get("/api/audit?limit=2&offset=1").json()
    assert [i["decision"] for i in page["items"]] == ["deny", "allow"] and page["next_offset"] is None
    assert client.get("/api/audit?limit=1").json()["next_offset"] == 1


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("limit=501", "Query parameter 'limit' has value '501'. Input should be less than or equal to 500"),
        ("limit=x", "'limit'"),
        ("offset=-1", "'offset'"),
        ("since=yesterday", "Query parameter 'since' has value 'yesterday'. Not an ISO-8601 datetime."),
    ],
)
def test_bad_audit_parameters_are_400(client: TestClient, query: str, words: str) -> None:
    response = client.get(f"/api/audit?{query}")
    assert response.status_code == 400
    assert words in response.json()["error"]["message"]


def test_trace_lookup_errors(client: TestClient) -> None:
    missing = client.get(f"/api/traces/{trace_id(10**12).hex()}")
    assert missing.status_code == 404 and "No spans" in missing.json()["error"]["message"]
    bad = client.get("/api/traces/not-hex")
    assert bad.status_code == 400 and "32 hex" in bad.json()["error"]["message"]


def test_health_and_unknown_routes(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/nope").json() == {"error": {"message": "Not Found: GET /nope"}}
    assert client.get("/v1/traces").status_code == 405
    monkeypatch.setattr(collector(client).store, "ping", lambda: False)
    down = client.get("/healthz")
    assert down.status_code == 503 and "does not answer" in down.json()["error"]["message"]


def test_query_failures_answer_json(settings: CollectorSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    with app_client(settings, raise_server_exceptions=False) as client:
        store = collector(client).store
        monkeypatch.setattr(store, "audit", lambda filters, check: (_ for _ in ()).throw(DatabaseError("gone")))
        assert client.get("/api/audit").status_code == 503
        monkeypatch.setattr(store, "audit", lambda filters, check: 1 / 0)
        failed = client.get("/api/audit")
        assert (failed.status_code, failed.json()) == (500, {"error": {"message": "Internal error."}})


def test_many_small_exports_become_few_inserts(settings: CollectorSettings) -> None:
    app = create_app(replace(settings, flush_interval=0.5))

    async def main() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            proxy = {"authorization": f"Bearer {PROXY_TOKEN}"}
            async with httpx.AsyncClient(transport=transport, base_url="http://collector", headers=proxy) as http:
                bodies = [request(*(span() for _ in range(10))).SerializeToString() for _ in range(50)]
                responses = await asyncio.gather(
                    *(http.post("/v1/traces", content=b, headers=PROTOBUF) for b in bodies)
                )
                assert all(r.status_code == 200 for r in responses)
            parts: Collector = app.state.collector
            assert parts.batcher.inserts <= 10  # 50 exports; typically 1 or 2 inserts
            count = parts.store._query("SELECT count() FROM {db:Identifier}.otel_traces", {"db": settings.database})
            assert count == [(500,)]

    asyncio.run(main())


def test_the_real_process_takes_sdk_exports_and_keeps_them_across_restarts(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [*BASTION, "collector", "--collector-port", str(port), "--data-dir", str(tmp_path / "data")]
    with running(args, log=tmp_path / "first.log") as proc:
        wait_for_http(f"{url}/healthz", proc=proc)
        provider = TracerProvider(resource=Resource.create({"service.name": "bastion-proxy"}))
        exporter = OTLPSpanExporter(
            endpoint=f"{url}/v1/traces",
            compression=Compression.Gzip,
            headers={"authorization": f"Bearer {PROXY_TOKEN}"},
        )
        provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer = provider.get_tracer("test")
        for agent in ("a1", "a2"):
            with (
                tracer.start_as_current_span("chat gpt-4o", attributes=decision_span(agent)),
                tracer.start_as_current_span("inner"),
            ):
                pass
        provider.shutdown()
        with collector_api(url) as api:
            items = api.get("/api/audit").json()["items"]
            assert sorted(i["agent_id"] for i in items) == ["a1", "a2"]
            assert len(api.get(f"/api/traces/{items[0]['trace_id']}").json()["spans"]) == 2
    with running(args, log=tmp_path / "second.log") as proc, collector_api(url) as api:
        wait_for_http(f"{url}/healthz", proc=proc)
        assert len(api.get("/api/audit").json()["items"]) == 2
