"""The proxy's Prometheus metrics: what the Metrics addon counts, and what is read at scrape time.

Names follow Prometheus conventions (``bastion_proxy_*``, counters end in ``_total``, times in
seconds). Every proxy process has its own registry, served on its metrics port (``--metrics-port``),
never on the ports agents use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bastion import semconv
from bastion.proxy.outbox import Outbox
from bastion.proxy.outbox_tracing import Shipper

# Bastion's own time per call is milliseconds; upstream (models) and human holds are seconds to hours.
ADDED_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
UPSTREAM_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
HOLD_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
_PII = semconv.BASTION_PII_PREFIX + "."


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "bastion_proxy_requests", "Calls the proxy answered, by kind and status code", ["kind", "code"], registry=r
        )
        self.decisions = Counter(
            "bastion_proxy_decisions",
            "Policy decisions, by effect and the rule that decided",
            ["effect", "rule"],
            registry=r,
        )
        self.refusals = Counter(
            "bastion_proxy_refusals",
            "Calls Bastion refused itself, by reason (the error code the caller got) and the deciding rule",
            ["reason", "rule"],
            registry=r,
        )
        self.pii = Counter(
            "bastion_proxy_pii_detections",
            "Personal data found, by entity type and direction (request or response)",
            ["type", "direction"],
            registry=r,
        )
        self.holds = Counter(
            "bastion_proxy_holds",
            "Calls held for a human, by outcome (approved, denied, timeout, ...)",
            ["outcome"],
            registry=r,
        )
        self.hold_wait = Histogram(
            "bastion_proxy_hold_wait_seconds",
            "How long held calls waited for a human",
            buckets=HOLD_BUCKETS,
            registry=r,
        )
        self.added = Histogram(
            "bastion_proxy_added_seconds",
            "Time Bastion added to a call: the whole call less the upstream's time and any hold",
            ["kind"],
            buckets=ADDED_BUCKETS,
            registry=r,
        )
        self.upstream = Histogram(
            "bastion_proxy_upstream_seconds",
            "Upstream time of a call, from forwarding the request to the response's last byte",
            ["kind"],
            buckets=UPSTREAM_BUCKETS,
            registry=r,
        )
        self.policy_reload_failures = Counter(
            "bastion_proxy_policy_reload_failures",
            "Policy edits rejected (the previous policy kept serving)",
            registry=r,
        )

    def record_pii(self, attributes: dict[str, object]) -> None:
        """Counts from the Redaction addon's attributes: ``bastion.pii.<direction>.<TYPE>`` = count."""
        for name, value in attributes.items():
            if not name.startswith(_PII) or not isinstance(value, int) or isinstance(value, bool):
                continue
            direction, _, entity = name[len(_PII) :].partition(".")
            if entity:
                self.pii.labels(type=entity, direction=direction).inc(value)

    def watch(self, policy_version: Callable[[], str], outbox: Outbox | None, shipper: Shipper | None) -> None:
        """Values read when Prometheus scrapes: the policy serving, and the outbox's backlog."""
        self.registry.register(_Live(policy_version, outbox, shipper))


@dataclass(eq=False)  # registries keep collectors in a dict
class _Live(Collector):
    policy_version: Callable[[], str]
    outbox: Outbox | None
    shipper: Shipper | None

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "bastion_proxy_policy_version_info", "The policy version serving (value 1)", labels=["version"]
        )
        info.add_metric([self.policy_version()], 1.0)
        yield info
        if self.outbox is None or self.shipper is None:
            return
        pending = self.outbox.pending_bytes()
        yield GaugeMetricFamily(
            "bastion_proxy_outbox_pending_bytes",
            "Spans and audit records on disk not yet stored by the collector",
            pending,
        )
        age = time.monotonic() - self.shipper.drained_at if pending else 0.0
        yield GaugeMetricFamily(
            "bastion_proxy_outbox_oldest_age_seconds", "Age of the oldest record waiting (at most; 0 when none)", age
        )
        yield CounterMetricFamily(
            "bastion_proxy_outbox_ship_errors", "Failed sends of the outbox to the collector", self.shipper.failures
        )
