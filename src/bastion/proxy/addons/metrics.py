"""Counts every call for Prometheus (``proxy/metrics.py``), once the other addons have decided it."""

from __future__ import annotations

import time

from mitmproxy import http

from bastion import semconv
from bastion.proxy.metrics import ProxyMetrics
from bastion.proxy.state import INTERNAL, state

_FORWARDED = "bastion.metrics.forwarded"  # wall time the request left for upstream
_COUNTED = "bastion.metrics.counted"


class Metrics:
    """Last in the list: its ``request`` runs after every decision and hold, its ``response`` after
    the stream, redaction and tracing are done."""

    def __init__(self, metrics: ProxyMetrics) -> None:
        self.metrics = metrics

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is None and flow.error is None:
            flow.metadata[_FORWARDED] = time.time()

    def response(self, flow: http.HTTPFlow) -> None:
        self._count(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._count(flow)

    def _count(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(INTERNAL) or flow.metadata.get(_COUNTED):
            return
        flow.metadata[_COUNTED] = True
        m, st = self.metrics, state(flow)
        kind = st.call.kind if st.call is not None else "unknown"
        response = flow.response
        m.requests.labels(kind=kind, code=str(response.status_code) if response else "error").inc()
        if st.decision is not None:
            m.decisions.labels(effect=st.decision.effect.value, rule=st.decision.rule).inc()
        if response is not None and (reason := response.headers.get("x-bastion-error")):
            m.refusals.labels(reason=reason, rule=st.decision.rule if st.decision else "").inc()
        m.record_pii(st.attributes)
        if outcome := st.attributes.get(semconv.BASTION_APPROVAL_STATUS):
            m.holds.labels(outcome=str(outcome)).inc()
            m.hold_wait.observe(st.held_seconds)
        end = (response.timestamp_end if response else None) or time.time()
        upstream = 0.0
        if (forwarded := flow.metadata.get(_FORWARDED)) is not None and response is not None:
            upstream = max(0.0, end - forwarded)
            m.upstream.labels(kind=kind).observe(upstream)
        total = end - flow.request.timestamp_start
        m.added.labels(kind=kind).observe(max(0.0, total - upstream - st.held_seconds))
