"""The proxy's tracer (spans go over OTLP/HTTP to the collector, in the background), and the span
helpers the addons share."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from typing import Any

from mitmproxy import http
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bastion import semconv
from bastion.proxy.audit_payload import audit_payload
from bastion.proxy.decision import Decision, PolicyRequest
from bastion.proxy.state import state

_propagator = TraceContextTextMapPropagator()


def tracer_provider(
    collector_url: str,
    processor: SpanProcessor | None = None,
    instance_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> TracerProvider:
    """The exporter to ``collector_url`` (with ``headers``: the proxy credential), or ``processor``
    instead (the durable outbox)."""
    resource = Resource.create(
        {
            "service.name": semconv.SERVICE_NAME_PROXY,
            "service.instance.id": instance_id or f"{socket.gethostname()}-{os.getpid()}",
        }
    )
    provider = TracerProvider(resource=resource)
    if processor is not None:
        provider.add_span_processor(processor)
        return provider
    exporter = OTLPSpanExporter(
        endpoint=collector_url.rstrip("/") + "/v1/traces", timeout=10, headers=dict(headers or {})
    )
    # The collector acknowledges only once a span is stored, so export big batches, and queue
    # generously while one is in flight.
    processor = BatchSpanProcessor(
        exporter, schedule_delay_millis=250, max_export_batch_size=2048, max_queue_size=65536
    )
    provider.add_span_processor(processor)
    return provider


def start_call_span(tracer: Tracer, flow: http.HTTPFlow, parent: Context) -> dict[str, str]:
    """Start the call's span under ``parent`` and pass its context upstream in the W3C headers;
    returns those headers. Called again when the body names another parent (MCP's
    ``params._meta``): the span started from the headers is then dropped, never ended, so never
    exported."""
    start = int(flow.request.timestamp_start * 1e9)
    span = tracer.start_span("bastion call", context=parent, kind=SpanKind.CLIENT, start_time=start)
    state(flow).span = span
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    for name in ("traceparent", "tracestate"):
        flow.request.headers.pop(name, None)
    flow.request.headers.update(carrier)
    return carrier


def request_attributes(request: PolicyRequest) -> dict[str, Any]:
    """What a tool call's decision record keeps to be decided again: its arguments (redacted as
    everything stored), their provenance and the session's earlier calls."""
    attrs: dict[str, Any] = {
        semconv.BASTION_POLICY_OBJECT: request.obj,
        semconv.BASTION_POLICY_ACTION: request.act,
        semconv.BASTION_TOOL_ARGUMENTS: _json(audit_payload(request.args)),
    }
    if request.prov is not None:
        attrs[semconv.BASTION_PROVENANCE] = _json(request.prov.record())
        untrusted = [name for name, value in request.args.items() if request.prov.from_untrusted(value)]
        attrs[semconv.BASTION_PROVENANCE_UNTRUSTED] = untrusted
    if request.session is not None:
        attrs[semconv.BASTION_SESSION_CALLS] = _json(audit_payload(request.session.record()))
    return attrs


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def decision_attributes(decision: Decision) -> dict[str, Any]:
    """Bastion's own decision attributes and their GenAI security-convention counterparts."""
    attrs: dict[str, Any] = {
        semconv.BASTION_DECISION: decision.effect.value,
        semconv.BASTION_POLICY_RULE: decision.rule,
        semconv.GEN_AI_SECURITY_DECISION_TYPE: decision.effect.value,
        semconv.GEN_AI_SECURITY_DECISION_REASON: decision.rule,
        semconv.GEN_AI_SECURITY_POLICY_NAME: decision.rule,
    }
    if decision.policy_version:
        attrs[semconv.BASTION_POLICY_VERSION] = decision.policy_version
        attrs[semconv.GEN_AI_SECURITY_POLICY_VERSION] = decision.policy_version
        attrs[semconv.GEN_AI_SECURITY_POLICY_ID] = "bastion"
    if decision.shadow_effect is not None:
        attrs[semconv.BASTION_SHADOW_DECISION] = decision.shadow_effect.value
        attrs[semconv.BASTION_SHADOW_RULE] = decision.shadow_rule or ""
    return attrs
