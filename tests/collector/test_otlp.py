import gzip

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from bastion.collector import otlp
from bastion.collector.otlp import JSON, PROTOBUF, OtlpError
from bastion.collector.schema import SpanRow
from factories.collector import error_status, request, span, to_json, trace_id


def decode(body: bytes, media: str = PROTOBUF, encoding: str | None = None) -> list[SpanRow]:
    return otlp.rows(otlp.parse(otlp.decompress(body, encoding), media))


def test_a_span_becomes_a_row_like_the_exporter_writes() -> None:
    parent = span("parent")
    child = span(
        "child",
        trace=parent.trace_id,
        parent=parent.span_id,
        start=1_700_000_000_123_456_789,
        duration_ns=1500,
        attributes={"n": 3, "ok": True},
        kind=Span.SPAN_KIND_CLIENT,
        status=error_status("boom"),
        trace_state="k=v",
    )
    child.events.add(name="retry", time_unix_nano=1_700_000_000_123_457_000).attributes.add(key="try")
    child.links.add(trace_id=trace_id(99), span_id=(5).to_bytes(8, "big"), trace_state="x=y")

    [row] = otlp.rows(request(child, service="agent-a"))

    assert row.timestamp == 1_700_000_000_123_456_789
    assert row.duration == 1500
    assert row.trace_id == parent.trace_id.hex() and len(row.trace_id) == 32
    assert row.span_id == child.span_id.hex() and row.parent_span_id == parent.span_id.hex()
    assert (row.span_kind, row.status_code, row.status_message) == ("Client", "Error", "boom")
    assert (row.service_name, row.scope_name, row.scope_version) == ("agent-a", "bastion", "0.1.0")
    assert row.resource_attributes == {"service.name": "agent-a", "host.name": "test"}
    assert row.span_attributes == {"n": "3", "ok": "true"}
    assert row.trace_state == "k=v"
    assert (row.events_timestamp, row.events_name, row.events_attributes) == (
        [1_700_000_000_123_457_000],
        ["retry"],
        [{"try": ""}],
    )
    assert row.links_trace_id == [trace_id(99).hex()] and row.links_span_id == ["0000000000000005"]
    assert row.links_trace_state == ["x=y"] and row.links_attributes == [{}]


@pytest.mark.parametrize(
    ("kind", "name"),
    [(0, "Unspecified"), (1, "Internal"), (2, "Server"), (3, "Client"), (4, "Producer"), (5, "Consumer")],
)
def test_span_kinds_are_named_like_pdata(kind: int, name: str) -> None:
    assert otlp.rows(request(span(kind=kind)))[0].span_kind == name


def test_a_root_span_has_an_empty_parent_and_no_service_gives_empty_name() -> None:
    message = request(span())
    del message.resource_spans[0].resource.attributes[:]
    [row] = otlp.rows(message)
    assert row.parent_span_id == "" and row.service_name == "" and row.status_code == "Unset"


def test_json_with_hex_ids_and_integer_enums_decodes_like_protobuf() -> None:
    message = request(span(kind=Span.SPAN_KIND_SERVER, parent=(7).to_bytes(8, "big"), attributes={"a": 1.5}))
    message.resource_spans[0].scope_spans[0].spans[0].links.add(trace_id=trace_id(3), span_id=b"\x01" * 8)
    body = to_json(message)
    assert b'"kind": 2' in body and message.resource_spans[0].scope_spans[0].spans[0].trace_id.hex().encode() in body

    assert decode(body, JSON) == decode(message.SerializeToString())


def test_gzip_bodies_are_accepted() -> None:
    message = request(span(), span())
    assert decode(gzip.compress(message.SerializeToString()), encoding="gzip") == otlp.rows(message)
    assert decode(gzip.compress(to_json(message)), JSON, "gzip") == otlp.rows(message)


@pytest.mark.parametrize(
    ("body", "media", "encoding", "status", "words"),
    [
        (b"\xff\xff\xff", PROTOBUF, None, 400, "not a valid protobuf"),
        (b"{not json", JSON, None, 400, "not valid JSON"),
        (b"[1, 2]", JSON, None, 400, "expected an object"),
        (b'{"resourceSpans": 5}', JSON, None, 400, "resourceSpans"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            JSON,
            None,
            400,
            "resourceSpans[0].scopeSpans[0].spans[0].traceId is not hex",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "abcd"}]}]}]}',
            JSON,
            None,
            400,
            "spanId must be 16 hex characters",
        ),
        (b"plain bytes", PROTOBUF, "gzip", 400, "not valid gzip"),
        (gzip.compress(b"x")[:-4], PROTOBUF, "gzip", 400, "truncated"),
        (b"", PROTOBUF, "br", 415, "Content-Encoding 'br'"),
    ],
)
def test_bad_bodies_raise_errors_that_name_the_problem(
    body: bytes, media: str, encoding: str | None, status: int, words: str
) -> None:
    with pytest.raises(OtlpError) as caught:
        decode(body, media, encoding)
    assert caught.value.status == status
    assert words in caught.value.message


def test_an_id_of_the_wrong_length_in_protobuf_is_rejected() -> None:
    bad = request(span(trace=b"\x01" * 5))
    with pytest.raises(OtlpError, match=r"spans\[0\].traceId must be 16 bytes, got 5"):
        decode(bad.SerializeToString())


def test_a_gzip_bomb_is_refused() -> None:
    with pytest.raises(OtlpError) as caught:
        otlp.decompress(gzip.compress(b"\0" * (otlp.MAX_BODY_BYTES + 1)), "gzip")
    assert caught.value.status == 413


@pytest.mark.parametrize(
    ("header", "media"),
    [("application/x-protobuf", PROTOBUF), ("application/json; charset=utf-8", JSON), ("Application/JSON", JSON)],
)
def test_content_types(header: str, media: str) -> None:
    assert otlp.media_type(header) == media


@pytest.mark.parametrize("header", [None, "text/plain", "application/protobuf"])
def test_unsupported_content_types_are_415(header: str | None) -> None:
    with pytest.raises(OtlpError, match="is not supported") as caught:
        otlp.media_type(header)
    assert caught.value.status == 415


def test_responses_are_empty_export_responses_in_the_request_encoding() -> None:
    assert ExportTraceServiceResponse.FromString(otlp.response(PROTOBUF)) == ExportTraceServiceResponse()
    assert otlp.response(JSON) == b"{}"
