"""The suite never reads the live policies folder: a team edits it, as the README says, and its test
run must not change with it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from support import BASTION, BUNDLED_POLICIES, LIVE_POLICIES, ROOT, SESSION_POLICIES, running


@pytest.mark.parametrize(
    ("args", "env"),
    [
        ([*BASTION, "proxy", "--policies", str(LIVE_POLICIES)], {}),
        ([*BASTION, "proxy", "--policies", "policies"], {}),
        ([*BASTION, "proxy", f"--policies={LIVE_POLICIES}"], {}),
        ([*BASTION, "collector"], {"BASTION_POLICIES": "./policies/"}),
        ([*BASTION, "proxy"], {"BASTION_KEYS_FILE": str(LIVE_POLICIES / "keys.yaml")}),
        ([*BASTION, "proxy"], {"BASTION_POLICIES": ""}),  # the default would be the live folder
    ],
)
def test_no_process_is_given_the_live_policies(args: list[str], env: dict[str, str]) -> None:
    with pytest.raises(AssertionError, match="live policies"), running(args, env):
        pass


def test_processes_read_a_copy_of_the_bundled_policies_by_default() -> None:
    assert os.environ["BASTION_POLICIES"] == str(SESSION_POLICIES)
    assert LIVE_POLICIES not in SESSION_POLICIES.parents and SESSION_POLICIES != LIVE_POLICIES
    bundled = {p.relative_to(BUNDLED_POLICIES) for p in BUNDLED_POLICIES.rglob("*") if p.name != "__pycache__"}
    assert {p.relative_to(SESSION_POLICIES) for p in SESSION_POLICIES.rglob("*")} == bundled


# How a test would name the live folder: ROOT / "policies", or a path climbing out of tests/.
_LIVE = re.compile(r"""(ROOT|parents\[\d\]|parent)\s*/\s*["']policies["']""")


def test_tests_name_the_live_folder_only_through_support() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in (ROOT / "tests").rglob("*.py")
        if path.name != "support.py" and ".venv" not in path.parts and path != Path(__file__)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if _LIVE.search(line)
    ]
    assert not found, f"read the bundled policies through support.copy_policies or SESSION_POLICIES: {found}"
