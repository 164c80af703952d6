"""How fast a held call moves on once a human decides: decision POST -> upstream receives the call.

Runs a collector and a proxy; the upstream is a tiny HTTP server in this process, so both ends of
the measurement read one clock. Each round sends a chat call under a review rule, waits for its
approval to be pending, approves it, and measures until the upstream sees the call.

    .venv/bin/python benchmarks/approvals.py [ROUNDS]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from harness import BASTION, copy_policies, free_ports, percentile, print_table, running, wait_for_http

RULE = "p, role:assistant, model:bench-review, *, review, bench-review,\n"
received: dict[str, float] = {}
arrived = threading.Condition()


class Upstream(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        at = time.perf_counter()
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        with arrived:
            received[body["messages"][0]["content"]] = at
            arrived.notify_all()
        reply = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return


def main(rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bastion-bench-approvals-"))
    policies = copy_policies(tmp / "policies", "tests")
    with (policies / "policy.csv").open("a") as f:
        f.write(RULE)
    with (policies / "bastion.yaml").open("a") as f:
        f.write("\napprovals:\n  timeout_seconds: 60\n")
    (policies / "keys.yaml").write_text("keys: []\n")

    def last_line(*args: str) -> str:
        out = subprocess.run([*BASTION, *args], check=True, capture_output=True, text=True).stdout
        return out.strip().splitlines()[-1]

    key = last_line("keys", "create", "--agent", "bench", "--role", "assistant", "--policies", str(policies))
    token = last_line("approvers", "add", "--name", "bench", "--policies", str(policies))
    upstream_port, collector_port, proxy_port, explicit_port = free_ports(4)
    server = ThreadingHTTPServer(("127.0.0.1", upstream_port), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    collector = f"http://127.0.0.1:{collector_port}"
    proxy = f"http://127.0.0.1:{proxy_port}"
    env = {
        "BASTION_OPENAI_UPSTREAM": f"http://127.0.0.1:{upstream_port}/",
        "OPENAI_API_KEY": "provider-key",
        "BASTION_POLICIES": str(policies),
    }
    collector_args = [*BASTION, "collector", "--collector-port", str(collector_port), "--data-dir", str(tmp / "data")]
    proxy_args = [*BASTION, "proxy", "--proxy-port", str(proxy_port), "--explicit-port", str(explicit_port)]
    proxy_args += ["--confdir", str(tmp / "conf"), "--collector-url", collector]
    decide_ms, resume_ms = [], []
    with (
        running(collector_args, env, log=tmp / "collector.log") as collector_proc,
        running(proxy_args, env, log=tmp / "proxy.log") as proxy_proc,
        httpx.Client(timeout=60) as client,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        wait_for_http(f"{collector}/healthz", timeout=60, proc=collector_proc)
        wait_for_http(f"{proxy}/healthz", timeout=60, proc=proxy_proc)
        auth = {"authorization": f"Bearer {token}"}
        for n in range(rounds + 3):  # the first three warm up
            marker = f"round {n}"
            body = {"model": "bench-review", "messages": [{"role": "user", "content": marker}]}
            call = pool.submit(
                client.post,
                f"{proxy}/openai/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {key}"},
            )
            while True:
                pending = client.get(f"{collector}/api/approvals", params={"status": "pending"}).json()["items"]
                if pending:
                    break
                time.sleep(0.005)
            (approval,) = pending
            started = time.perf_counter()
            r = client.post(
                f"{collector}/api/approvals/{approval['id']}/decision", json={"decision": "approve"}, headers=auth
            )
            decided = time.perf_counter()
            r.raise_for_status()
            with arrived:
                arrived.wait_for(lambda m=marker: m in received, timeout=30)  # type: ignore[misc]
            call.result().raise_for_status()
            if n >= 3:
                decide_ms.append((decided - started) * 1000)
                resume_ms.append((received[marker] - started) * 1000)
    server.shutdown()
    server.server_close()
    print(f"\nApprovals: decision POST -> upstream receives the held call ({rounds} rounds, one at a time)\n")
    print_table(
        ["measure", "p50 ms", "p95 ms", "max ms"],
        [
            ["decision POST answered", percentile(decide_ms, 50), percentile(decide_ms, 95), max(decide_ms)],
            ["upstream receives the call", percentile(resume_ms, 50), percentile(resume_ms, 95), max(resume_ms)],
        ],
    )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
