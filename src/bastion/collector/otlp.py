"""OTLP/HTTP trace intake: decode an ``ExportTraceServiceRequest`` and turn it into table rows.

Rows follow the OpenTelemetry Collector's ClickHouse exporter: ids in lowercase hex (empty when
all zero), ``SpanKind`` and ``StatusCode`` as pdata names them, attributes as ``AsString``,
``Timestamp`` the start time and ``Duration`` the end minus the start, in nanoseconds.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME

from bastion import semconv
from bastion.collector.schema import SpanRow
from bastion.collector.values import attributes

PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
MAX_BODY_BYTES: Final = 32 * 1024 * 1024
"""Largest request body accepted, before and after gzip."""

SPAN_KINDS: Final = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES: Final = ("Unset", "Ok", "Error")

_ID_BYTES: Final = {"traceId": 16, "spanId": 8, "parentSpanId": 8}
_SNAKE: Final = {"traceId": "trace_id", "spanId": "span_id", "parentSpanId": "parent_span_id"}


class OtlpError(Exception):
    """A request the intake cannot accept; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def media_type(content_type: str | None) -> str:
    """The OTLP encoding named by a Content-Type header, or OtlpError 415."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in (PROTOBUF, JSON):
        raise OtlpError(f"Content-Type {content_type!r} is not supported. Use {PROTOBUF} or {JSON}.", status=415)
    return media


def decompress(body: bytes, encoding: str | None) -> bytes:
    """The body without its Content-Encoding (gzip or identity), at most MAX_BODY_BYTES."""
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding != "gzip":
        raise OtlpError(f"Content-Encoding {encoding!r} is not supported. Use gzip.", status=415)
    out = bytearray()
    rest = body
    while rest:
        stream = zlib.decompressobj(wbits=31)
        try:
            out += stream.decompress(rest, MAX_BODY_BYTES + 1 - len(out))
        except zlib.error as e:
            raise OtlpError(f"Body is not valid gzip: {e}") from None
        if len(out) > MAX_BODY_BYTES:
            raise OtlpError(f"Body is larger than {MAX_BODY_BYTES} bytes after gzip.", status=413)
        if not stream.eof:
            raise OtlpError("Body is not valid gzip: the stream is truncated.")
        rest = stream.unused_data
    return bytes(out)


def parse(body: bytes, media: str) -> ExportTraceServiceRequest:
    """An ``ExportTraceServiceRequest`` from protobuf or OTLP/JSON bytes."""
    if media == PROTOBUF:
        try:
            return ExportTraceServiceRequest.FromString(body)
        except (DecodeError, RecursionError) as e:
            raise OtlpError(f"Body is not a valid protobuf ExportTraceServiceRequest: {e}") from None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise OtlpError(f"Body is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise OtlpError("Body is not an OTLP/JSON ExportTraceServiceRequest: expected an object.")
    _hex_ids_to_base64(doc)
    try:
        return json_format.ParseDict(doc, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError) as e:
        raise OtlpError(f"Body is not a valid OTLP/JSON ExportTraceServiceRequest: {e}") from None


def rows(request: ExportTraceServiceRequest) -> list[SpanRow]:
    """One row per span, in request order."""
    out: list[SpanRow] = []
    for i, resource_spans in enumerate(request.resource_spans):
        resource = attributes(resource_spans.resource.attributes)
        service = resource.get(SERVICE_NAME, "")
        for j, scope_spans in enumerate(resource_spans.scope_spans):
            for k, span in enumerate(scope_spans.spans):
                where = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                out.append(_row(span, resource, service, scope_spans.scope, where))
    return out


def response(media: str) -> bytes:
    """An empty ``ExportTraceServiceResponse`` (full success) in the request's encoding."""
    message = ExportTraceServiceResponse()
    if media == PROTOBUF:
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None).encode()


def _row(span: Span, resource: dict[str, str], service: str, scope: InstrumentationScope, where: str) -> SpanRow:
    events, links = span.events, span.links
    return SpanRow(
        timestamp=span.start_time_unix_nano,
        trace_id=_hex_id(span.trace_id, 16, f"{where}.traceId"),
        span_id=_hex_id(span.span_id, 8, f"{where}.spanId"),
        parent_span_id=_hex_id(span.parent_span_id, 8, f"{where}.parentSpanId"),
        trace_state=span.trace_state,
        span_name=span.name,
        span_kind=_name(SPAN_KINDS, span.kind),
        service_name=service,
        resource_attributes=resource,
        scope_name=scope.name,
        scope_version=scope.version,
        span_attributes=attributes(span.attributes),
        duration=max(0, span.end_time_unix_nano - span.start_time_unix_nano),
        status_code=_name(STATUS_CODES, span.status.code),
        status_message=span.status.message,
        events_timestamp=[e.time_unix_nano for e in events],
        events_name=[e.name for e in events],
        events_attributes=[attributes(e.attributes) for e in events],
        links_trace_id=[_hex_id(x.trace_id, 16, f"{where}.links[{n}].traceId") for n, x in enumerate(links)],
        links_span_id=[_hex_id(x.span_id, 8, f"{where}.links[{n}].spanId") for n, x in enumerate(links)],
        links_trace_state=[x.trace_state for x in links],
        links_attributes=[attributes(x.attributes) for x in links],
    )


def _name(names: tuple[str, ...], value: int) -> str:
    return names[value] if 0 <= value < len(names) else ""


def _hex_id(raw: bytes, size: int, where: str) -> str:
    if len(raw) not in (0, size):
        raise OtlpError(f"{where} must be {size} bytes, got {len(raw)}.")
    return "" if not any(raw) else raw.hex()


def _hex_ids_to_base64(doc: dict[str, Any]) -> None:
    """OTLP/JSON writes ids as hex where protobuf JSON expects base64: convert them in place."""
    for i, resource_spans in enumerate(_children(doc, "resourceSpans", "resource_spans")):
        for j, scope_spans in enumerate(_children(resource_spans, "scopeSpans", "scope_spans")):
            for k, span in enumerate(_children(scope_spans, "spans")):
                where = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                _convert_ids(span, where)
                for n, link in enumerate(_children(span, "links")):
                    _convert_ids(link, f"{where}.links[{n}]")


def _children(parent: Any, *keys: str) -> list[Any]:
    """The list under the first present key; anything malformed is left for ParseDict to name."""
    if not isinstance(parent, dict):
        return []
    for key in keys:
        value = parent.get(key)
        if isinstance(value, list):
            return value
    return []


def _convert_ids(obj: Any, where: str) -> None:
    if not isinstance(obj, dict):
        return
    for field, size in _ID_BYTES.items():
        for key in (field, _SNAKE[field]):
            value = obj.get(key)
            if not isinstance(value, str):
                continue
            try:
                raw = binascii.unhexlify(value)
            except (binascii.Error, ValueError):
                raise OtlpError(f"{where}.{field} is not hex: {value[:64]!r}.") from None
            if len(raw) not in (0, size):
                raise OtlpError(f"{where}.{field} must be {size * 2} hex characters, got {len(value)}.")
            obj[key] = base64.b64encode(raw).decode("ascii")


def agent_supplied(rows: list[SpanRow], agent_id: str) -> list[SpanRow]:
    """Spans an agent exported itself: Bastion's own attributes (``bastion.*``: decisions, the audit
    chain, alerts) are dropped, and each span is marked as the agent's, so none is ever read as
    Bastion's record."""
    marked = {semconv.BASTION_SOURCE: semconv.SOURCE_AGENT, semconv.BASTION_AGENT_ID: agent_id}

    def own(values: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in values.items() if not k.startswith(semconv.BASTION_PREFIX)}

    return [
        row._replace(
            span_attributes={**own(row.span_attributes), **marked},
            resource_attributes=own(row.resource_attributes),
            events_attributes=[own(e) for e in row.events_attributes],
        )
        for row in rows
    ]
