"""The cost budgets add to each model call in the proxy: the budget check before the call
(``BudgetGuard.check``) and pricing plus charging after it (``PriceTable.cost`` + ``charge``),
with 1 and 10 budgets and 0, 100 and 1000 unconfirmed charges held (a busy replica holds the
charges of its last few seconds).
"""

from __future__ import annotations

import time

from harness import percentile, print_table

from bastion.budgets import Budget
from bastion.proxy import cost
from bastion.proxy.budget_guard import BudgetGuard, Seen, View
from bastion.proxy.keys import Identity
from bastion.proxy.usage import Usage

SAMPLES = 5000
AGENT = Identity("agent-1", "assistant", "k1")


def guard(budgets: int, charges: int) -> BudgetGuard:
    configured = tuple(Budget(f"b{i}", "agent", "day", "usd", 1e9, local_allowance=1e9) for i in range(budgets))
    g = BudgetGuard("", configured=configured)
    now = time.time()
    g.confirm(View(now, {b.name: Seen(b.window(now)[0], {"agent-1": 1.0}) for b in configured}))
    for i in range(charges):
        g.charge(Identity(f"agent-{i % 50}", "assistant", "k1"), 10, 0.001, now)
    return g


def main() -> None:
    prices = cost.builtin()
    usage = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=200)
    rows = []
    for budgets in (1, 10):
        for charges in (0, 100, 1000):
            g = guard(budgets, charges)
            check, after = [], []
            for _ in range(SAMPLES):
                start = time.perf_counter()
                assert g.check(AGENT) is None
                middle = time.perf_counter()
                g.charge(AGENT, 1500, prices.cost("gpt-4o-2024-08-06", usage) or 0.0)
                end = time.perf_counter()
                g.charges.pop()
                check.append((middle - start) * 1000)
                after.append((end - middle) * 1000)
            rows.append(
                [
                    budgets,
                    charges,
                    percentile(check, 50),
                    percentile(check, 99),
                    percentile(after, 50),
                    percentile(after, 99),
                ]
            )
    print_table(["budgets", "charges held", "check p50 ms", "check p99 ms", "price+charge p50 ms", "p99 ms"], rows)


if __name__ == "__main__":
    main()
