"""The cost of one policy decision with 10, 1k and 10k rules, plain and with argument conditions.

"cold" requests never repeat (every call has new arguments), so each one runs Casbin over the
rules; "warm" requests repeat, so they are answered from the decision cache.
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
SAMPLES_10K_COLD = 200  # a cold decision over 10k rules takes tens of milliseconds


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


def measure(engine: PolicyEngine, rules: int, cold: bool) -> list[float]:
    rng = random.Random(7)
    times = []
    for n in range(SAMPLES_10K_COLD if cold and rules >= 10_000 else SAMPLES):
        i = rng.randrange(rules)
        amount = n if cold else 5
        request = PolicyRequest(
            "agent",
            f"r{i % 10}",
            f"tool:tool_{i % 50 if not cold else i}",
            "call",
            {"amount": amount, "to": "a@example.com"},
        )
        start = time.perf_counter()
        engine.decide(request)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    rows = []
    for rules in (10, 1_000, 10_000):
        for conditional in (False, True):
            engine = PolicyEngine(policies(rules, conditional))
            for cold in (True, False):
                times = measure(engine, rules, cold)
                rows.append(
                    (
                        rules,
                        "conditions" if conditional else "plain",
                        "cold" if cold else "warm",
                        percentile(times, 50),
                        percentile(times, 99),
                    )
                )
    print(f"\nOne decision (PolicyEngine.decide), {SAMPLES} samples each ({SAMPLES_10K_COLD} for 10k cold)\n")
    print_table(["rules", "rules have", "requests", "p50 ms", "p99 ms"], rows)


if __name__ == "__main__":
    main()
