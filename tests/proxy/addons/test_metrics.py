"""The Metrics addon counts each finished call once, from what the addons before it decided."""

from __future__ import annotations

import time

from mitmproxy import http
from mitmproxy.test import tutils

from bastion import semconv
from bastion.proxy.addons.metrics import Metrics
from bastion.proxy.decision import deny
from bastion.proxy.errors import error_response
from bastion.proxy.metrics import ProxyMetrics
from bastion.proxy.state import INTERNAL, state
from factories.proxy import flow


def metric(m: ProxyMetrics, name: str, **labels: str) -> float:
    return m.registry.get_sample_value(name, labels) or 0.0


def test_a_refused_call_counts_its_decision_and_reason_once_and_no_upstream_time() -> None:
    m = ProxyMetrics()
    addon, f = Metrics(m), flow()
    state(f).decision = deny("no-large-models", "large models are not for assistants")
    f.response = error_response("openai", 403, "denied", "policy_denied")
    addon.request(f)
    addon.response(f)
    addon.error(f)  # a flow that also errors is still one call
    assert metric(m, "bastion_proxy_decisions_total", effect="deny", rule="no-large-models") == 1
    assert metric(m, "bastion_proxy_refusals_total", reason="policy_denied", rule="no-large-models") == 1
    assert metric(m, "bastion_proxy_requests_total", kind="unknown", code="403") == 1
    assert metric(m, "bastion_proxy_upstream_seconds_count", kind="unknown") == 0
    assert metric(m, "bastion_proxy_added_seconds_count", kind="unknown") == 1


def test_a_held_call_counts_its_outcome_wait_and_personal_data() -> None:
    m = ProxyMetrics()
    addon, f = Metrics(m), flow()
    st = state(f)
    st.held_seconds = 42.0
    st.attributes[semconv.BASTION_APPROVAL_STATUS] = "approved"
    st.attributes[f"{semconv.BASTION_PII_PREFIX}.request.EMAIL_ADDRESS"] = 2
    st.attributes[semconv.BASTION_PII_FAILED_OPEN] = True  # not a count
    f.request.timestamp_start = time.time() - 42.5  # arrived 42.5 s ago, held 42 s of it
    addon.request(f)  # forwarded now
    f.response = http.Response.make(200, b"{}")
    f.response.timestamp_end = time.time() + 0.5
    addon.response(f)
    assert metric(m, "bastion_proxy_holds_total", outcome="approved") == 1
    assert metric(m, "bastion_proxy_hold_wait_seconds_sum") == 42.0
    assert metric(m, "bastion_proxy_pii_detections_total", type="EMAIL_ADDRESS", direction="request") == 2
    assert 0.45 < metric(m, "bastion_proxy_upstream_seconds_sum", kind="unknown") < 0.6
    # The hold is the human's time, not Bastion's: 43 s in all, less the hold, less upstream.
    assert 0.4 < metric(m, "bastion_proxy_added_seconds_sum", kind="unknown") < 0.6


def test_health_checks_are_not_calls() -> None:
    m = ProxyMetrics()
    f = flow("/healthz", method="GET")
    f.metadata[INTERNAL] = True
    f.response = tutils.tresp()
    Metrics(m).response(f)
    assert metric(m, "bastion_proxy_requests_total", kind="unknown", code="200") == 0


def test_the_policy_version_and_outbox_are_read_when_scraped() -> None:
    m = ProxyMetrics()
    version = ["v1"]
    m.watch(lambda: version[0], None, None)
    assert metric(m, "bastion_proxy_policy_version_info", version="v1") == 1
    version[0] = "v2"
    assert metric(m, "bastion_proxy_policy_version_info", version="v2") == 1
    assert metric(m, "bastion_proxy_policy_version_info", version="v1") == 0
