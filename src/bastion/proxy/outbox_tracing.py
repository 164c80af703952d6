"""Durable telemetry: spans go to the outbox first, then a shipper sends them to the collector.

* :class:`OutboxSpanProcessor` encodes each ended span as an OTLP ``ExportTraceServiceRequest``
  (the SDK's own encoder) and appends it to the :class:`~bastion.proxy.outbox.Outbox`. A span that
  carries a decision becomes the next link of this instance's hash chain: its canonical record
  (with ``view_hash`` over the span as the collector will store it), signed by the instance's
  key, its sequence number and hash are added as ``bastion.audit.*`` attributes. A chain head
  span gets the chain position it follows in the log, signed.
* :class:`Shipper` sends what is durable and not yet acknowledged, oldest first, with exponential
  backoff while the collector is down or busy, and advances the committed position on each 2xx.
  Serialized requests concatenate into one valid request, so a batch is one POST.
* :class:`HeadTicker` records the chain head every few seconds, so a truncated tail shows.
* :func:`start_records`: the public key and, after a restart, the anchor a proxy records at start.
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
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Tracer

from bastion import audit_chain, audit_keys, semconv
from bastion.audit_keys import Signer
from bastion.collector import otlp
from bastion.proxy.outbox import Outbox, Record

log = logging.getLogger(__name__)

PROTOBUF: Final = {"content-type": "application/x-protobuf"}


def stored_view(request: ExportTraceServiceRequest) -> audit_chain.SpanView:
    """The request's one span as the collector will store it and the audit view will read it."""
    (row,) = otlp.rows(request)
    return audit_chain.SpanView(
        row.timestamp,
        row.trace_id,
        row.span_id,
        row.span_name,
        row.service_name,
        row.duration,
        row.status_code,
        row.span_attributes,
    )


def audit_record(payload: bytes) -> dict[str, Any] | None:
    """The chain record an outbox payload carries, if any."""
    request = ExportTraceServiceRequest.FromString(payload)
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                for kv in span.attributes:
                    if kv.key == semconv.BASTION_AUDIT_RECORD:
                        record: dict[str, Any] = json.loads(kv.value.string_value)
                        return record
    return None


def _compact(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class OutboxSpanProcessor(SpanProcessor):
    def __init__(self, outbox: Outbox, signer: Signer) -> None:
        self.outbox = outbox
        self.signer = signer
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        try:
            request = encode_spans([span])
            attributes = span.attributes or {}
            decided = semconv.BASTION_DECISION in attributes
            fields = audit_chain.span_fields(stored_view(request)) if decided else {}
            proto = request.resource_spans[0].scope_spans[0].spans[0]
            instance = self.outbox.instance_id
            with self._lock:  # chain position and log order must agree
                seq, hash_hex = 0, ""
                if decided:
                    record = audit_chain.seal(
                        fields,
                        instance=instance,
                        seq=self.outbox.chain_seq + 1,
                        prev_hash=self.outbox.chain_hash or audit_chain.GENESIS,
                        signer=self.signer,
                    )
                    seq, hash_hex = record["seq"], record["hash"]
                    for key, value in (
                        (semconv.BASTION_AUDIT_RECORD, _compact(record)),
                        (semconv.BASTION_AUDIT_SEQ, str(seq)),
                        (semconv.BASTION_AUDIT_HASH, hash_hex),
                    ):
                        proto.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
                elif semconv.BASTION_AUDIT_HEAD in attributes:
                    head_seq, head_hash = self.outbox.chain_seq, self.outbox.chain_hash
                    signature = self.signer.sign(audit_keys.HEAD, instance, head_seq, head_hash)
                    head = {"instance": instance, "seq": head_seq, "hash": head_hash, "signature": signature}
                    for kv in proto.attributes:
                        if kv.key == semconv.BASTION_AUDIT_HEAD:
                            kv.value.string_value = _compact(head)
                    log.info("audit chain head: %s", _compact({k: v for k, v in head.items() if k != "signature"}))
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
        """Record the head; the span processor fills in the position it follows in the log, signed."""
        seq = self.outbox.chain_seq
        if seq == self._last:
            return
        try:
            self.tracer.start_span("bastion audit head", attributes={semconv.BASTION_AUDIT_HEAD: ""}).end()
            self._last = seq
        except Exception:
            log.exception("could not record the audit chain head")


def start_records(outbox: Outbox, signer: Signer) -> list[tuple[str, dict[str, str]]]:
    """The spans a proxy records at start: its public key, and an anchor if its chain had advanced.

    The anchor is the chain position the collector had acknowledged (the record before the first
    one still in the outbox), so a chain can begin in a new store right after it.
    """
    instance = outbox.instance_id
    key = {"instance": instance, "public_key": signer.public_key}
    key["signature"] = signer.sign(audit_keys.KEY, instance, 0, signer.public_key)
    out = [("bastion audit key", {semconv.BASTION_AUDIT_KEY: _compact(key)})]
    seq, hash_hex = outbox.chain_seq, outbox.chain_hash
    for waiting in outbox.backlog():
        if waiting.seq:
            record = audit_record(waiting.payload)
            seq, hash_hex = waiting.seq - 1, str(record["prev_hash"]) if record else ""
            break
    if seq > 0 and hash_hex:
        anchor = {"instance": instance, "seq": seq, "hash": hash_hex}
        anchor["signature"] = signer.sign(audit_keys.ANCHOR, instance, seq, hash_hex)
        out.append(("bastion audit anchor", {semconv.BASTION_AUDIT_ANCHOR: _compact(anchor)}))
    return out
