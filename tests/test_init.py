"""`bastion init` makes the operators' policies folder from the bundled one, once; the proxy and the
collector refuse to start without one, saying how to make it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bastion.bundled import POLICIES, init_policies
from support import BASTION, ROOT


def bastion(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BASTION, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_init_copies_the_bundled_policies_once_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "policies"
    done = bastion("init", "--policies", str(target))
    assert done.returncode == 0, done.stderr
    assert (target / "policy.csv").read_text() == (POLICIES / "policy.csv").read_text()
    (target / "policy.csv").write_text("p, role:assistant, model:*, chat, allow, edited\n")
    again = bastion("init", "--policies", str(target))
    assert again.returncode == 1 and "exists already" in again.stdout
    assert (target / "policy.csv").read_text().endswith("edited\n")  # the operator's edit stays
    assert not init_policies(target)


def test_a_proxy_or_collector_without_a_policies_folder_says_how_to_make_one(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for part in ("proxy", "collector"):
        done = bastion(part, "--policies", str(missing))
        assert done.returncode != 0
        assert f"no policies folder at {missing}" in done.stderr and "bastion init" in done.stderr
