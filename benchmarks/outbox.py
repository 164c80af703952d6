"""What the durable outbox costs: a chat call's latency through Bastion with the outbox (each
response waits for its group commit's fsync) and without it (spans exported in the background),
side by side in one run; and the collector's ingest rate with deduplication, for fresh spans and
for a sender re-shipping spans the store already has.

Rounds alternate between the targets so that machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
from collector_ingest import export_body
from harness import (
    BASTION,
    create_key,
    free_ports,
    measure_targets,
    print_latency_table,
    print_table,
    running,
    wait_for_http,
)

BODY: dict[str, object] = {"model": "scripted-small", "messages": [{"role": "user", "content": "benchmark"}]}
PROTOBUF = {"content-type": "application/x-protobuf"}


async def _ingest(url: str, bodies: list[bytes], concurrency: int) -> float:
    async with httpx.AsyncClient(timeout=120) as client:
        queue = list(bodies)

        async def worker() -> None:
            while queue:
                body = queue.pop()
                (await client.post(url, content=body, headers=PROTOBUF)).raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--throughput-requests", type=int, default=1000)
    parser.add_argument("--ingest-spans", type=int, default=100_000)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bastion-bench-outbox-"))
    ports = free_ports(6)
    model_port, collector_port, on_port, on_explicit, off_port, off_explicit = ports
    model, collector = f"http://127.0.0.1:{model_port}", f"http://127.0.0.1:{collector_port}"
    key = create_key(tmp / "keys.yaml", "bench")
    env = {
        "BASTION_OPENAI_UPSTREAM": model + "/",
        "OPENAI_API_KEY": "provider-key",
        "BASTION_KEYS_FILE": str(tmp / "keys.yaml"),
        "BASTION_COLLECTOR_URL": collector,
    }

    def proxy(port: int, explicit: int, name: str, outbox: str) -> list[str]:
        ports = ["--proxy-port", str(port), "--explicit-port", str(explicit)]
        return [*BASTION, "proxy", *ports, "--confdir", str(tmp / name / "conf"), "--outbox-dir", outbox]

    with (
        running([*BASTION, "scripted-model", "--port", str(model_port)]),
        running([*BASTION, "collector", "--collector-port", str(collector_port), "--data-dir", str(tmp / "data")]),
        running(proxy(on_port, on_explicit, "on", str(tmp / "on" / "outbox")), env),
        running(proxy(off_port, off_explicit, "off", "off"), env),
    ):
        wait_for_http(f"{model}/v1/models")
        wait_for_http(f"{collector}/healthz")
        auth = {"authorization": f"Bearer {key}"}
        targets = {
            "direct": (f"{model}/v1/chat/completions", {}),
            "bastion, no outbox": (f"http://127.0.0.1:{off_port}/openai/v1/chat/completions", auth),
            "bastion, outbox": (f"http://127.0.0.1:{on_port}/openai/v1/chat/completions", auth),
        }
        for port in (on_port, off_port):
            wait_for_http(f"http://127.0.0.1:{port}/healthz")
        samples, rates = measure_targets(targets, BODY, args.rounds, args.per_round, args.throughput_requests)
        bodies = [export_body(1000, seed) for seed in range(args.ingest_spans // 1000)]
        url = f"{collector}/v1/traces"
        fresh = asyncio.run(_ingest(url, list(bodies), 8))
        again = asyncio.run(_ingest(url, list(bodies), 8))
        stats = httpx.get(f"{collector}/api/spans/stats", params={"service": "bench"}).json()

    print_latency_table(samples, rates)
    n = len(bodies) * 1000
    print(f"\nCollector ingest with deduplication: {n} spans in exports of 1000, 8 senders\n")
    print_table(
        ["exports", "spans", "seconds", "spans/s", "stored"],
        [
            ("fresh spans", n, fresh, n / fresh, stats["distinct"]),
            ("re-shipped (all duplicates)", n, again, n / again, stats["spans"]),
        ],
    )


if __name__ == "__main__":
    main()
