"""The cost of one policy decision with 10, 1k and 10k rules, plain and with argument conditions.

Three kinds of request: "repeat" asks the same thing again (the decision cache answers);
"new arguments" asks about one of 50 known tools with arguments never seen before (the per-object
index answers, Casbin evaluates only that tool's rules); "new tool" is the first request for a
tool (the index is built for it by scanning every rule once).

The second table is the example assistant policy (policies/examples/assistant: named lists,
provenance and session functions) deciding tool calls emitted after a 20-message conversation:
"decision" is PolicyEngine.decide with the provenance and session facts ready; "call" adds what the
proxy does per emitted call before it (reading the conversation, tracing every argument, the
session's earlier calls). Every call has new arguments, so the decision cache never answers.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import percentile, print_table

from bastion.bundled import POLICIES as BUNDLED
from bastion.proxy.decision import PolicyRequest
from bastion.proxy.policy import PolicyEngine
from bastion.proxy.provenance import Trust, read_conversation, trace
from bastion.proxy.session import conversation_facts

SAMPLES = 2000


def policies(rules: int, conditional: bool) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="bench-policy-"))
    shutil.copy(BUNDLED / "model.conf", directory)
    shutil.copy(BUNDLED / "bastion.yaml", directory)
    lines = []
    for i in range(rules):
        condition = f"r.args.amount <= {i + 100} && r.args.to.endswith('@example.com')" if conditional else ""
        lines.append(f"p, role:r{i % 10}, tool:tool_{i}, call, allow, rule-{i}, {condition}")
    (directory / "policy.csv").write_text("\n".join(lines) + "\n")
    return directory


def measure(engine: PolicyEngine, rules: int, kind: str) -> list[float]:
    rng = random.Random(7)
    known = [rng.randrange(rules) for _ in range(50)]
    for i in known:  # warm the index and the cache for the known tools
        engine.decide(request(i, 0))
    fresh = iter(rng.sample(range(rules), min(rules, 500)))
    times = []
    for n in range(1, SAMPLES + 1):
        if kind == "new tool":
            i = next(fresh, None)
            if i is None:
                break
            req = request(i, n)
        else:
            req = request(rng.choice(known), n if kind == "new arguments" else 0)
        start = time.perf_counter()
        engine.decide(req)
        times.append((time.perf_counter() - start) * 1000)
    return times


def request(i: int, amount: int) -> PolicyRequest:
    return PolicyRequest("agent", f"r{i % 10}", f"tool:tool_{i}", "call", {"amount": amount, "to": "a@example.com"})


def conversation(messages: int = 20) -> dict[str, Any]:
    """A chat request of ``messages`` messages: system, user, then tool calls and their results."""
    body: list[dict[str, Any]] = [
        {"role": "system", "content": "You are the assistant of Ann Smith (ann@example.com). " * 4},
        {"role": "user", "content": "Deal with my inbox: pay the invoices and answer bob@example.com."},
    ]
    tools = ["read_inbox", "fetch_url", "read_file", "send_email"]
    i = 0
    while len(body) < messages:
        name = tools[i % len(tools)]
        body.append(
            {
                "role": "assistant",
                "tool_calls": [{"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": "{}"}}],
            }
        )
        text = f"Result {i}: mail from someone{i}@partner.org about invoice {1000 + i}, see https://site{i}.example/x. "
        body.append({"role": "tool", "tool_call_id": f"c{i}", "content": text * 3})
        i += 1
    return {"model": "m", "messages": body[:messages]}


def assistant_calls(n: int) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        calls += [
            ("tool:send_email", {"to": f"someone{i % 9}@partner.org", "subject": f"s{i}", "body": "b"}),
            ("tool:send_money", {"recipient": "DE44500105175407324931", "amount": 100 + i}),
            ("tool:fetch_url", {"url": f"https://site{i % 9}.example/x?n={i}"}),
            ("tool:send_direct_message", {"user": f"u{i}@partner.org", "text": "hi"}),
            ("tool:create_event", {"title": f"t{i}", "day": "monday", "participants": ["bob@example.com"]}),
        ]
    return calls


def measure_assistant() -> list[tuple[Any, ...]]:
    directory = Path(tempfile.mkdtemp(prefix="bench-assistant-"))
    shutil.copytree(BUNDLED / "examples" / "assistant", directory / "policies")
    engine = PolicyEngine(directory / "policies")
    body, trust = conversation(), Trust(("list_events",))
    times: dict[str, tuple[list[float], list[float]]] = {}
    for obj, args in assistant_calls(SAMPLES // 5):
        start = time.perf_counter()
        found = read_conversation(body, "chat.completions")
        request = PolicyRequest(
            "agent", "assistant", obj, "call", args, trace(found, args, trust), conversation_facts(found.calls)
        )
        ready = time.perf_counter()
        engine.decide(request)
        end = time.perf_counter()
        decision, call = times.setdefault(obj, ([], []))
        decision.append((end - ready) * 1000)
        call.append((end - start) * 1000)
    rows = []
    for obj, (decision, call) in times.items():
        rows.append((obj, len(decision), percentile(decision, 50), percentile(decision, 99), percentile(call, 50)))
    return rows


def main() -> None:
    rows = []
    for rules in (10, 1_000, 10_000):
        for conditional in (False, True):
            engine = PolicyEngine(policies(rules, conditional))
            for kind in ("repeat", "new arguments", "new tool"):
                times = measure(engine, rules, kind)
                label = "conditions" if conditional else "plain"
                rows.append((rules, label, kind, len(times), percentile(times, 50), percentile(times, 99)))
    print("\nOne decision (PolicyEngine.decide)\n")
    print_table(["rules", "rules have", "request", "samples", "p50 ms", "p99 ms"], rows)
    print("\nExample assistant policy, tool calls after a 20-message conversation\n")
    headers = ["tool", "samples", "decision p50 ms", "decision p99 ms", "call p50 ms"]
    print_table(headers, measure_assistant())


if __name__ == "__main__":
    main()
