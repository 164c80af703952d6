"""Factories for collector tests: OTLP spans and export requests, in protobuf and OTLP/JSON."""

from __future__ import annotations

import base64
import itertools
import json
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from bastion import semconv
from bastion.collector.app import create_app
from bastion.settings import CollectorSettings, Secret
from support import OPERATORS_FILE, PROXY_TOKEN, TestCredentials

_ids = itertools.count(1)
NOW = time.time_ns()


def settings(data_dir: Path, database: str, **kw: Any) -> CollectorSettings:
    """With the test run's operators and proxy credential (support.TestCredentials presents them)."""
    credentials = {"operators_file": OPERATORS_FILE, "proxy_token": Secret(PROXY_TOKEN)}
    return CollectorSettings(data_dir=data_dir, database=database, **{**credentials, **kw})


def value(v: Any) -> AnyValue:
    """A Python value as an OTLP AnyValue (lists become arrays, dicts key/value lists)."""
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    if isinstance(v, list):
        return AnyValue(array_value=ArrayValue(values=[value(x) for x in v]))
    if isinstance(v, dict):
        return AnyValue(kvlist_value=KeyValueList(values=kvs(v)))
    return AnyValue(string_value=str(v))


def kvs(attributes: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in attributes.items()]


def trace_id(n: int | None = None) -> bytes:
    return (n if n is not None else next(_ids)).to_bytes(16, "big")


def span(
    name: str = "chat gpt-4o",
    *,
    trace: bytes | None = None,
    parent: bytes = b"",
    start: int | None = None,
    duration_ns: int = 2_500_000,
    attributes: dict[str, Any] | None = None,
    **fields: Any,
) -> Span:
    start = NOW if start is None else start
    return Span(
        trace_id=trace or trace_id(),
        span_id=next(_ids).to_bytes(8, "big"),
        parent_span_id=parent,
        name=name,
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration_ns,
        attributes=kvs(attributes or {}),
        **fields,
    )


def decision_span(
    agent: str = "agent-1", decision: str = "allow", kind: str = "model", **attributes: Any
) -> dict[str, Any]:
    """The attributes of a span the proxy writes for one governed call."""
    return {
        semconv.BASTION_AGENT_ID: agent,
        semconv.BASTION_AGENT_ROLE: "analyst",
        semconv.BASTION_DECISION: decision,
        semconv.BASTION_POLICY_RULE: f"rule-{decision}",
        semconv.BASTION_POLICY_VERSION: "v1",
        semconv.BASTION_CALL_KIND: kind,
        semconv.GEN_AI_OPERATION_NAME: "chat",
        semconv.GEN_AI_PROVIDER_NAME: "openai",
        semconv.GEN_AI_REQUEST_MODEL: "gpt-4o",
        semconv.GEN_AI_USAGE_INPUT_TOKENS: 12,
        semconv.HTTP_RESPONSE_STATUS_CODE: 200,
        **attributes,
    }


def request(
    *spans: Span, service: str = semconv.SERVICE_NAME_PROXY, scope: str = "bastion"
) -> ExportTraceServiceRequest:
    resource = Resource(attributes=kvs({"service.name": service, "host.name": "test"}))
    scope_spans = ScopeSpans(spans=list(spans))
    scope_spans.scope.name, scope_spans.scope.version = scope, "0.1.0"
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(resource=resource, scope_spans=[scope_spans])])


def to_json(message: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON as the spec writes it: ids in hex, enums as integers."""
    doc = json_format.MessageToDict(message, use_integers_for_enums=True)
    for resource_spans in doc.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for s in scope_spans.get("spans", []):
                for obj in [s, *s.get("links", [])]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in obj:
                            obj[key] = base64.b64decode(obj[key]).hex()
    return json.dumps(doc).encode()


def error_status(message: str) -> Status:
    return Status(code=Status.STATUS_CODE_ERROR, message=message)


def app_client(settings: CollectorSettings, **kw: Any) -> TestClient:
    """An in-process collector with the test credentials (support.TestCredentials); use it as a
    context manager so that the app's lifespan runs."""
    client = TestClient(create_app(settings), **kw)
    client.auth = TestCredentials()
    return client
