"""Run every benchmark in turn; each prints its own table."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = [
    "proxy_overhead.py",
    "collector_ingest.py",
    "policy_decisions.py",
    "limits.py",
    "budgets.py",
    "outbox.py",
    "approvals.py",
    "pii.py",
    "pii_stream.py",
]

if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    for name in BENCHMARKS:
        print(f"\n## {name}\n", flush=True)
        sys.argv = [name]
        runpy.run_path(str(HERE / name), run_name="__main__")
