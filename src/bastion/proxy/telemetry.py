"""The proxy's tracer: spans go over OTLP/HTTP to the collector, in the background."""

from __future__ import annotations

import os
import socket

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from bastion import semconv


def tracer_provider(collector_url: str) -> TracerProvider:
    resource = Resource.create(
        {
            "service.name": semconv.SERVICE_NAME_PROXY,
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
        }
    )
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=collector_url.rstrip("/") + "/v1/traces", timeout=10)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    return provider
