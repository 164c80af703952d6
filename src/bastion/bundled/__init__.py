"""The policies Bastion ships: the starting point of every policies folder, and what tests copy.

``policies/`` (or wherever ``--policies`` points) is the operators' own folder: they edit it, and
nothing of Bastion's writes into it but `bastion init` (once, when it does not exist) and the CLI
commands that manage keys, lists and operators. The bundled set below stays as shipped, so a team's
edits never change what Bastion's own tests and examples read.
"""

from __future__ import annotations

import shutil
from pathlib import Path

POLICIES = Path(__file__).parent / "policies"
# Files that hold a deployment's own state, never copied from the bundled set.
_STATE = ("operators.yaml", "approvers.yaml", "__pycache__")


def init_policies(target: Path) -> bool:
    """Create ``target`` as a copy of the bundled policies; False (nothing written) when it exists."""
    if target.exists():
        return False
    shutil.copytree(POLICIES, target, ignore=shutil.ignore_patterns(*_STATE))
    return True
