"""Wires the outbox into the proxy: signing key, tracer provider, shipper and chain heads (the response
hold is the ``Durability`` addon, given the outbox)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from bastion import audit_keys
from bastion.audit_keys import Signer
from bastion.proxy.outbox import Outbox
from bastion.proxy.outbox_tracing import HeadTicker, OutboxSpanProcessor, Shipper, start_records
from bastion.proxy.telemetry import tracer_provider

log = logging.getLogger(__name__)
SWITCH_INTERVAL = 0.0005


@dataclass
class DurableTelemetry:
    outbox: Outbox
    provider: TracerProvider
    shipper: Shipper
    head_interval: float
    signer: Signer
    ticker: HeadTicker | None = field(default=None)

    @classmethod
    def open(
        cls, outbox_dir: Path, collector_url: str, head_interval: float, headers: Mapping[str, str] | None = None
    ) -> DurableTelemetry:
        outbox = Outbox(outbox_dir).open()
        try:
            signer = audit_keys.load_or_create(outbox_dir)  # fail closed: no trail without its key
        except Exception:
            outbox.close()
            raise
        # Each response waits for the writer thread's fsync; with the default 5 ms GIL switch
        # interval the hand-offs between the event loop and that thread cost more than the fsync.
        sys.setswitchinterval(SWITCH_INTERVAL)
        processor = OutboxSpanProcessor(outbox, signer)
        provider = tracer_provider(collector_url, processor=processor, instance_id=outbox.instance_id)
        log.info(
            "outbox %s: instance %s, audit key %s, chain at seq %d, unacknowledged records: %s",
            outbox.directory,
            outbox.instance_id,
            signer.public_key,
            outbox.chain_seq,
            outbox.unacknowledged(),
        )
        return cls(outbox, provider, Shipper(outbox, collector_url, headers=headers), head_interval, signer)

    def start(self, tracer: Tracer) -> None:
        """Record the public key (and an anchor) before any call, then ship and tick."""
        for name, attributes in start_records(self.outbox, self.signer):
            tracer.start_span(name, attributes=attributes).end()
        self.shipper.start()
        self.ticker = HeadTicker(self.outbox, tracer, self.head_interval)
        self.ticker.start()

    def stop(self) -> None:
        if self.ticker is not None:
            self.ticker.stop()
        self.provider.shutdown()  # writes what is pending and closes the outbox
        self.shipper.stop()
