"""The cost of one policy decision with 10, 1k and 10k rules, plain and with argument conditions.

Three kinds of request: "repeat" asks the same thing again (the decision cache answers);
"new arguments" asks about one of 50 known tools with arguments never seen before (the per-object
index answers, Casbin evaluates only that tool's rules); "new tool" is the first request for a
tool (the index is built for it by scanning every rule once).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path

from harness import ROOT, percentile, print_table

from bastion.proxy.decision import PolicyRequest
from bastion.proxy.policy import PolicyEngine

SAMPLES = 2000


def policies(rules: int, conditional: bool) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="bench-policy-"))
    shutil.copy(ROOT / "policies" / "model.conf", directory)
    shutil.copy(ROOT / "policies" / "bastion.yaml", directory)
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


if __name__ == "__main__":
    main()
