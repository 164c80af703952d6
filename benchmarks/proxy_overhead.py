"""Latency (concurrency 1) and throughput (concurrency 32) of a chat call, side by side in one run:
direct to the scripted model, through bare mitmproxy, and through Bastion with policy and tracing on,
without a pii.yaml and with the bundled one (patterns over the request and the answer), and without a
pii.yaml with one worker per core (``--workers auto``).

Rounds alternate between the targets so that machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from harness import (
    BASTION,
    copy_policies,
    create_key,
    free_ports,
    measure_targets,
    print_latency_table,
    running,
    wait_for_http,
)

BODY = {"model": "scripted-small", "messages": [{"role": "user", "content": "benchmark"}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--throughput-requests", type=int, default=1500)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
    model_port, bare_port, collector_port, *proxy_ports = free_ports(9)
    model = f"http://127.0.0.1:{model_port}"
    key = create_key(tmp / "keys.yaml", "bench")
    bundled = copy_policies(tmp / "policies", "tests")
    without_pii = copy_policies(tmp / "policies-without-pii", "tests", "pii.yaml")
    env = {
        "BASTION_OPENAI_UPSTREAM": model + "/",
        "OPENAI_API_KEY": "provider-key",
        "BASTION_KEYS_FILE": str(tmp / "keys.yaml"),
        "BASTION_COLLECTOR_URL": f"http://127.0.0.1:{collector_port}",
    }

    def proxy(name: str, reverse: int, explicit: int, policies: Path, workers: str = "1") -> list[str]:
        ports = ("--proxy-port", str(reverse), "--explicit-port", str(explicit))
        dirs = ("--confdir", str(tmp / name / "conf"), "--outbox-dir", str(tmp / name / "outbox"))
        return [*BASTION, "proxy", *ports, *dirs, "--policies", str(policies), "--workers", workers]

    with (
        running([*BASTION, "scripted-model", "--port", str(model_port)]),
        running([sys.executable, str(Path(__file__).parent / "bare_mitmproxy.py"), model, str(bare_port)]),
        running([*BASTION, "collector", "--collector-port", str(collector_port), "--data-dir", str(tmp / "data")]),
        running(proxy("bastion", proxy_ports[0], proxy_ports[1], bundled), env),
        running(proxy("without-pii", proxy_ports[2], proxy_ports[3], without_pii), env),
        running(proxy("workers", proxy_ports[4], proxy_ports[5], without_pii, "auto"), env),
    ):
        wait_for_http(f"{model}/v1/models")
        wait_for_http(f"http://127.0.0.1:{collector_port}/healthz", timeout=60)
        for port in proxy_ports[::2]:
            wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        targets = {
            "direct": (f"{model}/v1/chat/completions", {}),
            "bare mitmproxy": (f"http://127.0.0.1:{bare_port}/v1/chat/completions", {}),
            "bastion, no pii.yaml": (
                f"http://127.0.0.1:{proxy_ports[2]}/openai/v1/chat/completions",
                {"authorization": f"Bearer {key}"},
            ),
            "bastion": (
                f"http://127.0.0.1:{proxy_ports[0]}/openai/v1/chat/completions",
                {"authorization": f"Bearer {key}"},
            ),
            f"bastion, no pii.yaml, {os.cpu_count()} workers": (
                f"http://127.0.0.1:{proxy_ports[4]}/openai/v1/chat/completions",
                {"authorization": f"Bearer {key}"},
            ),
        }
        wait_for_http(f"http://127.0.0.1:{bare_port}/v1/models")
        samples, rates = measure_targets(targets, BODY, args.rounds, args.per_round, args.throughput_requests)

    print_latency_table(samples, rates)


if __name__ == "__main__":
    main()
