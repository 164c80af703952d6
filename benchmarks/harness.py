"""Shared pieces for benchmarks: processes, latency rounds and a table printer."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import (  # noqa: E402
    BASTION,
    SESSION_POLICIES,
    copy_policies,
    create_key,
    free_port,
    free_ports,
    running,
    wait_for_http,
)

# As in the tests: processes that name no policies read a copy of the bundled ones, never the live folder.
os.environ.setdefault("BASTION_POLICIES", str(SESSION_POLICIES))

__all__ = [
    "BASTION",
    "ROOT",
    "copy_policies",
    "create_key",
    "free_port",
    "free_ports",
    "latencies",
    "measure_targets",
    "percentile",
    "print_latency_table",
    "print_table",
    "running",
    "throughput",
    "wait_for_http",
]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def latencies(client: httpx.Client, url: str, body: dict[str, object], headers: dict[str, str], n: int) -> list[float]:
    """Milliseconds per request, one request at a time."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        r = client.post(url, json=body, headers=headers)
        out.append((time.perf_counter() - start) * 1000)
        r.raise_for_status()
    return out


async def _throughput(
    url: str, body: dict[str, object], headers: dict[str, str], concurrency: int, total: int
) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        remaining = total

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                (await client.post(url, json=body, headers=headers)).raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - start)


def throughput(url: str, body: dict[str, object], headers: dict[str, str], concurrency: int, total: int) -> float:
    """Requests per second with ``concurrency`` requests in flight: wrk when installed (a Python
    client tops out near the proxy's own rate), else an httpx client."""
    if shutil.which("wrk"):
        return wrk(url, body, headers, concurrency, seconds=10)
    return asyncio.run(_throughput(url, body, headers, concurrency, total))


def wrk(url: str, body: dict[str, object], headers: dict[str, str], concurrency: int, seconds: int) -> float:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}"]
    lines += [
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}"
        for k, v in {"Content-Type": "application/json", **headers}.items()
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    command = ["wrk", "-t2", f"-c{concurrency}", f"-d{seconds}s", "-s", script.name, url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} failed responses from {url}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"unexpected wrk output: {out}")
    return float(match.group(1))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


Targets = dict[str, tuple[str, dict[str, str]]]  # name -> (url, headers)


def measure_targets(
    targets: Targets, body: dict[str, object], rounds: int, per_round: int, throughput_requests: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Latencies at concurrency 1, in rounds alternating between the targets so that machine noise
    hits them alike (after a warm-up), then each target's throughput at concurrency 32."""
    samples: dict[str, list[float]] = {name: [] for name in targets}
    with httpx.Client(timeout=30) as client:
        for url, headers in targets.values():
            latencies(client, url, body, headers, 20)  # warm-up
        for _ in range(rounds):
            for name, (url, headers) in targets.items():
                samples[name] += latencies(client, url, body, headers, per_round)
    rates = {name: throughput(url, body, headers, 32, throughput_requests) for name, (url, headers) in targets.items()}
    return samples, rates


def print_latency_table(samples: dict[str, list[float]], rates: dict[str, float]) -> None:
    """The table of ``measure_targets``' results, each target next to the first one's."""
    base = next(iter(samples.values()))
    base50, base99 = percentile(base, 50), percentile(base, 99)
    rows = []
    for name, values in samples.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        rows.append((name, len(values), p50, p99, p50 - base50, p99 - base99, rates[name]))
    print(f"\nChat completion, non-streaming; {os.cpu_count()} CPUs; latency at concurrency 1, throughput at 32\n")
    print_table(["target", "requests", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms", "req/s @32"], rows)


def pii_proxy(tmp: Path, i: int, ports: Sequence[int], pii_yaml: str | None) -> list[str]:
    """The ``i``-th of several proxies side by side (reverse and explicit ports ``ports[2i]``,
    ``ports[2i+1]``), on a copy of the bundled policies with ``pii_yaml`` (none: without the file)."""
    target = copy_policies(tmp / f"policies-{i}", "tests", "pii.yaml")
    if pii_yaml is not None:
        (target / "pii.yaml").write_text(pii_yaml)
    return [
        *BASTION, "proxy", "--proxy-port", str(ports[2 * i]), "--explicit-port", str(ports[2 * i + 1]),
        "--policies", str(target), "--confdir", str(tmp / f"conf-{i}"), "--outbox-dir", str(tmp / f"outbox-{i}"),
    ]  # fmt: skip
