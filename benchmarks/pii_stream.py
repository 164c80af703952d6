"""The first token of a streamed answer, through real processes, side by side in one run: direct to
the scripted model, through Bastion without pii.yaml, with the bundled pii.yaml (patterns) and with
names on too (NER). The scripted model streams its answer in 4 text events, 20 ms apart.

Rounds alternate between the targets so that machine noise hits them alike. Time to first text is
what the hold-back buffer (and the analysis worker's one-chunk lag) costs an agent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from harness import (
    BASTION,
    create_key,
    free_ports,
    percentile,
    pii_proxy,
    print_table,
    running,
    wait_for_http,
)

from bastion.bundled import POLICIES as BUNDLED

CHUNK_DELAY = 0.02
PROMPT = (
    "Please draft a short reply to the customer: thank them for the report, say the fix ships "
    "next week, and ask whether the workaround we sent yesterday helped with the export problem."
)
BODY = {"model": "scripted-small", "messages": [{"role": "user", "content": PROMPT}], "stream": True}


def first_and_last(client: httpx.Client, url: str, headers: dict[str, str]) -> tuple[float, float]:
    """Milliseconds to the first text delta and to the end of the stream."""
    start = time.perf_counter()
    first = None
    with client.stream("POST", url, json=BODY, headers=headers) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if first is None and line.startswith("data: {") and text_in(json.loads(line[6:])):
                first = time.perf_counter()
    end = time.perf_counter()
    return ((first or end) - start) * 1000, (end - start) * 1000


def text_in(chunk: dict[str, Any]) -> bool:
    return any((choice.get("delta") or {}).get("content") for choice in chunk.get("choices") or [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=10)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
    model_port, collector_port, *ports = free_ports(8)
    model = f"http://127.0.0.1:{model_port}"
    key = create_key(tmp / "keys.yaml", "bench")
    bundled = (BUNDLED / "pii.yaml").read_text()
    with_names = bundled.replace("  # PERSON: {", "  PERSON: {")
    assert with_names != bundled
    configs = {"bastion, no pii.yaml": None, "bastion, bundled pii.yaml": bundled, "bastion, with PERSON": with_names}
    env = {
        "BASTION_OPENAI_UPSTREAM": model + "/",
        "OPENAI_API_KEY": "provider-key",
        "BASTION_KEYS_FILE": str(tmp / "keys.yaml"),
        "BASTION_COLLECTOR_URL": f"http://127.0.0.1:{collector_port}",
    }

    collector = [*BASTION, "collector", "--collector-port", str(collector_port), "--data-dir", str(tmp / "data")]
    scripted = {"BASTION_SCRIPTED_CHUNK_DELAY": str(CHUNK_DELAY)}
    with ExitStack() as processes:
        processes.enter_context(running([*BASTION, "scripted-model", "--port", str(model_port)], scripted))
        processes.enter_context(running(collector))
        for i, pii_yaml in enumerate(configs.values()):
            processes.enter_context(running(pii_proxy(tmp, i, ports, pii_yaml), env, log=tmp / f"proxy-{i}.log"))
        wait_for_http(f"{model}/v1/models")
        wait_for_http(f"http://127.0.0.1:{collector_port}/healthz", timeout=60)
        targets = {"direct": (f"{model}/v1/chat/completions", {})}
        for i, name in enumerate(configs):
            wait_for_http(f"http://127.0.0.1:{ports[2 * i]}/healthz", timeout=60)  # logs: proxy-N.log in tmp
            targets[name] = (
                f"http://127.0.0.1:{ports[2 * i]}/openai/v1/chat/completions",
                {"authorization": f"Bearer {key}"},
            )
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        with httpx.Client(timeout=60) as client:
            for url, headers in targets.values():
                first_and_last(client, url, headers)  # warm-up
            for _ in range(args.rounds):
                for name, (url, headers) in targets.items():
                    samples[name] += [first_and_last(client, url, headers) for _ in range(args.per_round)]

    direct_first = statistics.median(f for f, _ in samples["direct"])
    rows = []
    for name, values in samples.items():
        firsts, lasts = [f for f, _ in values], [last for _, last in values]
        first = statistics.median(firsts)
        rows.append([name, len(values), first, percentile(firsts, 95), first - direct_first, statistics.median(lasts)])
    print(
        f"\nStreamed chat completion (an echo of {len(PROMPT)} characters in 4 text events, one every "
        f"{CHUNK_DELAY * 1000:.0f} ms); {os.cpu_count()} CPUs; concurrency 1\n"
    )
    print_table(
        ["target", "streams", "first text p50 ms", "first text p95 ms", "added p50 ms", "whole stream p50 ms"], rows
    )


if __name__ == "__main__":
    main()
