"""Durable telemetry: spans go to the outbox first, then a shipper sends them to the collector.

* :class:`OutboxSpanProcessor` encodes each ended span as an OTLP ``ExportTraceServiceRequest``
  (the SDK's own encoder) and appends it to the :class:`~bastion.proxy.outbox.Outbox`. A span that
  carries a decision becomes the next link of this instance's hash chain: its canonical record,
  sequence number and hash are added as ``bastion.audit.*`` attributes.
* :class:`Shipper` sends what is durable and not yet acknowledged, oldest first, with exponential
  backoff while the collector is down or busy, and advances the committed position on each 2xx.
  Serialized requests concatenate into one valid request, so a batch is one POST.
* :class:`HeadTicker` records the chain head every few seconds, so a truncated tail shows.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import httpx
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Tracer

from bastion import audit_chain, semconv
from bastion.proxy.outbox import Outbox, Record

log = logging.getLogger(__name__)

PROTOBUF: Final = {"content-type": "application/x-protobuf"}


def chain_fields(span: ReadableSpan) -> dict[str, Any]:
    """The decision record's fields that come from the span (the chain adds its position)."""
    attrs: Mapping[str, Any] = span.attributes or {}
    context = span.get_span_context()

    def text(key: str) -> str:
        value = attrs.get(key)
        return "" if value is None else str(value)

    target = text(semconv.GEN_AI_TOOL_NAME) or text(semconv.GEN_AI_REQUEST_MODEL)
    if not target:
        port = text(semconv.SERVER_PORT)  # set on CONNECT and raw TCP records, whose target is host:port
        target = text(semconv.SERVER_ADDRESS) + (f":{port}" if port else "") + text(semconv.URL_PATH)
    return {
        "timestamp": span.start_time or 0,
        "trace_id": f"{context.trace_id:032x}" if context else "",
        "span_id": f"{context.span_id:016x}" if context else "",
        "agent": text(semconv.BASTION_AGENT_ID),
        "decision": text(semconv.BASTION_DECISION),
        "rule": text(semconv.BASTION_POLICY_RULE),
        "policy_version": text(semconv.BASTION_POLICY_VERSION),
        "kind": text(semconv.BASTION_CALL_KIND),
        "target": target,
    }


class OutboxSpanProcessor(SpanProcessor):
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        try:
            request = encode_spans([span])
            decided = semconv.BASTION_DECISION in (span.attributes or {})
            fields = chain_fields(span) if decided else {}
            with self._lock:  # chain position and log order must agree
                seq, hash_hex = 0, ""
                if decided:
                    record = audit_chain.seal(
                        fields,
                        instance=self.outbox.instance_id,
                        seq=self.outbox.chain_seq + 1,
                        prev_hash=self.outbox.chain_hash or audit_chain.GENESIS,
                    )
                    seq, hash_hex = record["seq"], record["hash"]
                    proto = request.resource_spans[0].scope_spans[0].spans[0]
                    for key, value in (
                        (semconv.BASTION_AUDIT_RECORD, json.dumps(record, sort_keys=True, separators=(",", ":"))),
                        (semconv.BASTION_AUDIT_SEQ, str(seq)),
                        (semconv.BASTION_AUDIT_HASH, hash_hex),
                    ):
                        proto.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
                self.outbox.append(request.SerializeToString(), seq, hash_hex)
        except Exception:
            log.exception("outbox: could not record a span")

    def shutdown(self) -> None:
        self.outbox.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.outbox.wait_durable(timeout=timeout_millis / 1000)


class Shipper:
    """Sends the outbox to ``collector_url`` until stopped; at-least-once, the store dedupes."""

    def __init__(
        self,
        outbox: Outbox,
        collector_url: str,
        *,
        poll_interval: float = 0.1,
        max_backoff: float = 5.0,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.outbox = outbox
        self.url = collector_url.rstrip("/") + "/v1/traces"
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.shipped = 0
        self.failures = 0
        # When the shipper last found nothing left to send: what waits is at most this old.
        self.drained_at = time.monotonic()
        # ``headers`` carry the proxy credential the collector requires.
        self._client = httpx.Client(timeout=timeout, transport=transport, headers=headers)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bastion-outbox-shipper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, drain: float = 3.0) -> None:
        """Stop after trying for up to ``drain`` seconds to ship what is left."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=drain)
        self._client.close()

    def _run(self) -> None:
        backoff = self.poll_interval
        while True:
            stopping = self._stop.is_set()
            records = self.outbox.read()
            if not records:
                self.drained_at = time.monotonic()
                if stopping:
                    return
                self._stop.wait(self.poll_interval)
                continue
            if self.ship(records):
                backoff = self.poll_interval
                continue
            if stopping:
                log.warning("outbox: stopping with unacknowledged records; they are sent after restart")
                return
            self._stop.wait(backoff * random.uniform(0.5, 1.0))
            backoff = min(self.max_backoff, backoff * 2)

    def ship(self, records: Sequence[Record]) -> bool:
        """POST ``records`` as one request; True once acknowledged (or refused for good)."""
        try:
            response = self._client.post(self.url, content=b"".join(r.payload for r in records), headers=PROTOBUF)
        except httpx.HTTPError as e:
            self.failures += 1
            log.warning("outbox: collector unreachable (%s); %d records wait", e, len(records))
            return False
        if response.is_success:
            self.outbox.acknowledge(records[-1].end)
            self.shipped += len(records)
            return True
        if response.status_code in (400, 413, 415) and len(records) > 1:
            # One bad record must not hold back the rest: send them one by one.
            return all(self.ship([record]) for record in records)
        if response.status_code in (400, 413, 415):
            log.error("outbox: the collector refused a record for good (%s): %s", response.status_code, response.text)
            self.outbox.acknowledge(records[-1].end)
            return True
        self.failures += 1
        log.warning("outbox: collector answered %s; %d records wait", response.status_code, len(records))
        return False


class HeadTicker:
    """Every ``interval`` seconds, if the chain moved, record its head as a span."""

    def __init__(self, outbox: Outbox, tracer: Tracer, interval: float) -> None:
        self.outbox = outbox
        self.tracer = tracer
        self.interval = interval
        self._last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bastion-audit-heads", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.record()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.record()

    def record(self) -> None:
        seq, hash_hex = self.outbox.chain_seq, self.outbox.chain_hash
        if seq == self._last:
            return
        head = json.dumps({"instance": self.outbox.instance_id, "seq": seq, "hash": hash_hex}, sort_keys=True)
        try:
            self.tracer.start_span("bastion audit head", attributes={semconv.BASTION_AUDIT_HEAD: head}).end()
            self._last = seq
            log.info("audit chain head: %s", head)
        except Exception:
            log.exception("could not record the audit chain head")
