"""The added cost of limits per call: the Limits addon's request hook and LimitsSettle's response hook.

Each sample is one allowed model call (an OpenAI chat request with a short history) from one of 100
agents, through both hooks in one event loop, with: no limits section (the hooks return at once);
rates only (requests per second and minute, tokens per minute, a target); and every limit at once
(rates, tokens, a target, concurrency slots for the agent and the upstream, the step budget, the
repetition detector, the error streak and the upstream circuit). Limits are set high enough that
no call is refused: this is the cost every admitted call pays.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from harness import percentile, print_table
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from bastion import semconv
from bastion.proxy.addons.limits import Limits, LimitsSettle
from bastion.proxy.classify import Call
from bastion.proxy.config import Route, Upstream
from bastion.proxy.decision import allow
from bastion.proxy.keys import Identity
from bastion.proxy.limiter import Limiter
from bastion.proxy.limits import LimitSettings, parse
from bastion.proxy.state import state

SAMPLES = 5000
AGENTS = 100
HIGH = 1e9
RATES: dict[str, Any] = {
    "defaults": {"requests_per_second": HIGH, "requests_per_minute": HIGH, "tokens_per_minute": HIGH},
    "targets": [{"match": "model:scripted-*", "requests_per_minute": HIGH, "tokens_per_minute": HIGH}],
}
EVERYTHING: dict[str, Any] = {
    "defaults": {
        **RATES["defaults"],
        "concurrency": 1000,
        "queue": 10,
        "max_steps": 10**9,
        "max_repeats": 10**9,
        "error_streak": 5,
    },
    "targets": RATES["targets"],
    "upstreams": {"concurrency": 10_000, "queue": 10, "failures": 5},
}
ROUTE = Route("openai", "/openai/", "openai", Upstream.parse("http://model.test:9100/"), (), None, None)
BODY = {
    "model": "scripted-small",
    "max_tokens": 200,
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny"},
    ],
}
USAGE = json.dumps({"usage": {"prompt_tokens": 40, "completion_tokens": 12}}).encode()


def call_flow(n: int) -> http.HTTPFlow:
    content = json.dumps(BODY).encode()
    f = tflow.tflow(req=tutils.treq(method=b"POST", path=b"/openai/v1/chat/completions", content=content))
    st = state(f)
    st.route, st.body = ROUTE, BODY
    st.identity = Identity(f"agent-{n % AGENTS}", "assistant", f"key{n % AGENTS}")
    path = "/v1/chat/completions"
    st.call = Call(
        semconv.KIND_MODEL, "openai", "chat", "chat.completions", "scripted-small", False, "model.test", path, "POST"
    )
    st.decision = allow("bench", "benchmark")
    return f


async def measure(settings: LimitSettings) -> list[float]:
    limits = Limits(Limiter(settings))
    settle = LimitsSettle(limits)
    flows = [call_flow(n) for n in range(SAMPLES)]
    times = []
    for f in flows:
        response = http.Response.make(200, USAGE, {"content-type": "application/json"})
        start = time.perf_counter()
        await limits.request(f)
        f.response = response
        st = state(f)
        st.usage.input_tokens, st.usage.output_tokens = 40, 12  # as ResponseStream reads them
        settle.response(f)
        times.append((time.perf_counter() - start) * 1000)
        assert f.response is response, "a limit refused a call"
    return times


def main() -> None:
    rows = []
    for label, raw in (("no limits section", None), ("rates and tokens", RATES), ("every limit", EVERYTHING)):
        settings = parse(Path("bastion.yaml"), raw)
        times = asyncio.run(measure(settings))[500:]  # the first calls warm the buckets and caches
        rows.append((label, len(times), percentile(times, 50), percentile(times, 90), percentile(times, 99)))
    print("\nAdded cost per call (Limits.request + LimitsSettle.response)\n")
    print_table(["limits", "samples", "p50 ms", "p90 ms", "p99 ms"], rows)


if __name__ == "__main__":
    main()
