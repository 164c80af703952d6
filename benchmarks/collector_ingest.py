"""The collector's ingest rate: OTLP/HTTP protobuf exports of Bastion-shaped spans, acknowledged
only once the store has them, at several batch sizes and concurrencies."""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

import httpx
from harness import BASTION, free_port, print_table, running, wait_for_http
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

ATTRIBUTES = {
    "bastion.agent.id": "bench-agent",
    "bastion.decision": "allow",
    "bastion.policy.rule": "assistant-scripted-models",
    "bastion.call.kind": "model",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "scripted-small",
}


def export_body(spans: int, seed: int) -> bytes:
    now = time.time_ns()
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="bench"))]),
                scope_spans=[
                    ScopeSpans(
                        spans=[
                            Span(
                                trace_id=os.urandom(16),
                                span_id=os.urandom(8),
                                name="chat scripted-small",
                                kind=Span.SPAN_KIND_CLIENT,
                                start_time_unix_nano=now + i,
                                end_time_unix_nano=now + i + 1_000_000,
                                attributes=[
                                    KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in ATTRIBUTES.items()
                                ],
                            )
                            for i in range(spans)
                        ]
                    )
                ],
            )
        ]
    )
    return request.SerializeToString()


async def ingest(url: str, bodies: list[bytes], concurrency: int) -> float:
    """Seconds to have every body acknowledged."""
    queue = list(bodies)
    async with httpx.AsyncClient(timeout=60) as client:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                r = await client.post(url, content=body, headers={"content-type": "application/x-protobuf"})
                r.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--total-spans", type=int, default=100_000)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/traces"
    rows = []
    with running(
        [*BASTION, "collector", "--collector-port", str(port), "--data-dir", tempfile.mkdtemp(prefix="bench-")]
    ):
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
        # One proxy exports up to 2048 spans at a time, one export in flight; eight proxies, eight.
        for spans_per_export, concurrency in [(10, 1), (2048, 1), (512, 8), (2048, 8)]:
            total = min(args.total_spans, 2_000) if spans_per_export < 100 else args.total_spans
            bodies = [export_body(spans_per_export, i) for i in range(total // spans_per_export)]
            seconds = asyncio.run(ingest(url, bodies, concurrency))
            rows.append((spans_per_export, concurrency, total, seconds, total / seconds))
    print(f"\nCollector ingest into embedded chDB; {os.cpu_count()} CPUs\n")
    print_table(["spans/export", "concurrent senders", "spans", "seconds", "spans/s"], rows)


if __name__ == "__main__":
    main()
