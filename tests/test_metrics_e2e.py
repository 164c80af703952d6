"""Prometheus metrics, scraped from a running proxy (its own port) and collector (``/metrics``)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bastion.collector.metrics import CollectorMetrics
from bastion.proxy.metrics import ProxyMetrics
from factories import processes
from support import ROOT, collector_api, copy_policies, create_key, free_ports


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def chat(proxy: str, key: str, model: str, text: str = "hello") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    headers = {"authorization": f"Bearer {key}"}
    return httpx.post(f"{proxy}/openai/v1/chat/completions", json=body, headers=headers, timeout=30)


def test_proxy_and_collector_metrics_count_what_happened(tmp_path: Path) -> None:
    policies = copy_policies(tmp_path / "policies", "tests")
    key = create_key(policies / "keys.yaml")
    model_port, proxy_port, explicit_port, collector_port, metrics_port = free_ports(5)
    env = {"BASTION_OPENAI_UPSTREAM": processes.url(model_port) + "/", "OPENAI_API_KEY": "provider-key"}
    flags = ["--collector-url", processes.url(collector_port), "--metrics-port", str(metrics_port)]
    with (
        processes.scripted_model(tmp_path, model_port) as model,
        processes.collector(tmp_path, collector_port) as collector,
        processes.proxy(tmp_path, "proxy", (proxy_port, explicit_port), env, policies, flags) as proxy,
    ):
        processes.ready(model, collector, proxy)
        assert chat(proxy.url, key, "scripted-small", "mail me at jane.doe@example.com").status_code == 200
        assert chat(proxy.url, key, "scripted-large").status_code == 403
        assert chat(proxy.url, "bst_not-a-key", "scripted-small").status_code == 401
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        # Agents' port does not serve it.
        assert httpx.get(f"{proxy.url}/metrics", timeout=10).status_code != 200
        with collector_api(collector.url, role="viewer") as api:
            deadline = time.monotonic() + 30  # the outbox ships in the background
            while not value(got := samples(api.get("/metrics").text), "bastion_collector_spans_stored_total"):
                assert time.monotonic() < deadline, "the collector stored no spans"
                time.sleep(0.2)
        assert httpx.get(f"{collector.url}/metrics", timeout=10).status_code == 401
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    found = samples(scraped.text)
    assert value(found, "bastion_proxy_decisions_total", effect="allow", rule="assistant-scripted-models") == 1
    assert value(found, "bastion_proxy_decisions_total", effect="deny", rule="no-large-models") == 1
    refusals = {dict(labels)["rule"]: v for (n, labels), v in found.items() if n == "bastion_proxy_refusals_total"}
    assert refusals["no-large-models"] == 1 and len(refusals) == 2, refusals  # and the 401
    assert value(found, "bastion_proxy_requests_total", kind="model", code="200") == 1
    assert value(found, "bastion_proxy_pii_detections_total", type="EMAIL_ADDRESS", direction="request") == 1
    assert value(found, "bastion_proxy_upstream_seconds_count", kind="model") == 1
    assert value(found, "bastion_proxy_added_seconds_count", kind="model") >= 2
    assert any(n == "bastion_proxy_policy_version_info" for n, _ in found)
    assert ("bastion_proxy_outbox_pending_bytes", frozenset()) in found
    assert value(found, "bastion_proxy_outbox_ship_errors_total") == 0
    assert value(got, "bastion_collector_spans_received_total", source="bastion") >= 1
    assert value(got, "bastion_collector_requests_total", method="POST", code="200") >= 1  # the proxy's exports
    assert ("bastion_collector_approvals_pending", frozenset()) in got


def test_every_metric_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    families = {m.name for r in (ProxyMetrics().registry, CollectorMetrics().registry) for m in r.collect()}
    live = {"bastion_proxy_outbox_pending_bytes", "bastion_proxy_outbox_oldest_age_seconds"}
    live |= {"bastion_proxy_outbox_ship_errors", "bastion_proxy_policy_version_info"}
    for name in families | live:
        assert f"`{name}" in readme, f"{name} is not in the README's metrics table"
