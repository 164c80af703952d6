"""What reaches the provider: the labelled set (tests/data/pii_labelled_large.json, written by
pii_dataset.py) sent through real proxies with the openai SDK to the scripted model, which records
what it receives.

Per label: the share of labelled values that reach upstream verbatim. Over-redaction: the share of
PII-free texts that arrive changed. Cost: the median time per call, side by side with Bastion
without pii.yaml (alternating calls, one machine, noisy: read the differences). Configurations: the
shipped policies/pii.yaml, and the same with its PERSON and LOCATION lines switched on.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
from harness import BASTION, ROOT, create_key, free_ports, pii_proxy, print_table, running, wait_for_http

from bastion.bundled import POLICIES as BUNDLED

DATA = ROOT / "tests" / "data" / "pii_labelled_large.json"


def upstream_text(model: str) -> str:
    (seen,) = httpx.get(f"{model}/_scripted/requests").json()
    httpx.delete(f"{model}/_scripted/requests")
    return str(seen["body"]["messages"][0]["content"])


def main() -> None:
    cases: list[dict[str, Any]] = json.loads(DATA.read_text())
    tmp = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
    model_port, collector_port, *ports = free_ports(8)
    model = f"http://127.0.0.1:{model_port}"
    key = create_key(tmp / "keys.yaml", "bench")
    shipped = (BUNDLED / "pii.yaml").read_text()
    names = shipped.replace("  # PERSON: {", "  PERSON: {").replace("  # LOCATION: {", "  LOCATION: {")
    assert names != shipped
    configs = {"no pii.yaml": None, "shipped pii.yaml": shipped, "shipped + PERSON, LOCATION": names}
    env = {
        "BASTION_OPENAI_UPSTREAM": model + "/",
        "OPENAI_API_KEY": "provider-key",
        "BASTION_KEYS_FILE": str(tmp / "keys.yaml"),
        "BASTION_COLLECTOR_URL": f"http://127.0.0.1:{collector_port}",
    }
    collector = [*BASTION, "collector", "--collector-port", str(collector_port), "--data-dir", str(tmp / "data")]
    leaks: dict[str, Counter[str]] = {name: Counter() for name in configs}
    totals: Counter[str] = Counter()
    changed: Counter[str] = Counter()
    times: dict[str, list[float]] = {name: [] for name in configs}
    with ExitStack() as stack:
        stack.enter_context(running([*BASTION, "scripted-model", "--port", str(model_port)]))
        stack.enter_context(running(collector))
        clients = {}
        for i, (name, pii_yaml) in enumerate(configs.items()):
            stack.enter_context(running(pii_proxy(tmp, i, ports, pii_yaml), env, log=tmp / f"proxy-{i}.log"))
            clients[name] = openai.OpenAI(base_url=f"http://127.0.0.1:{ports[2 * i]}/openai/v1", api_key=key)
        wait_for_http(f"{model}/healthz")
        for i in range(len(configs)):
            wait_for_http(f"http://127.0.0.1:{ports[2 * i]}/healthz", timeout=60)
        httpx.delete(f"{model}/_scripted/requests")
        for case in cases:
            for name, client in clients.items():
                start = time.perf_counter()
                client.chat.completions.create(
                    model="scripted-small", messages=[{"role": "user", "content": case["text"]}]
                )
                times[name].append((time.perf_counter() - start) * 1000)
                seen = upstream_text(model)
                if not case["entities"]:
                    changed[name] += seen != case["text"]
                for label, value in case["entities"]:
                    leaks[name][label] += value in seen
            for label, _ in case["entities"]:
                totals[label] += 1
    clean = sum(not c["entities"] for c in cases)
    labels = sorted(totals)
    rows: list[list[object]] = []
    for label in [*labels, "all"]:
        total = totals[label] if label != "all" else sum(totals.values())
        row: list[object] = [label, total]
        for name in configs:
            leaked = leaks[name][label] if label != "all" else sum(leaks[name].values())
            row.append(f"{leaked / total:.0%}")
        rows.append(row)
    print(f"\nLabelled values that reached the provider verbatim ({len(cases)} texts, openai SDK, chat completions)\n")
    print_table(["label", "values", *configs], rows)
    base = statistics.median(times["no pii.yaml"])
    print(f"\nPII-free texts changed ({clean} texts) and cost per call\n")
    print_table(
        ["configuration", "PII-free texts changed", "call p50 ms", "added p50 ms"],
        [
            [
                name,
                f"{changed[name]}/{clean} ({changed[name] / clean:.1%})",
                statistics.median(t),
                statistics.median(t) - base,
            ]
            for name, t in times.items()
        ],
    )


if __name__ == "__main__":
    main()
