"""The proxy's tracer: spans go over OTLP/HTTP to the collector, in the background."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from bastion import semconv


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
