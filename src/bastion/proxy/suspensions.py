"""The last known suspensions, kept on disk so that a restart does not forget them.

The collector is the source of truth; the proxy polls it (``control.py``). A proxy that restarts
while the collector is down would otherwise start with no suspended agent and serve them all. So
every change it hears of is written here (atomically), and read back at start-up until the
collector answers again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from bastion.files import replace_text

log = logging.getLogger(__name__)
FILE_NAME = "suspended-agents.json"


def load(path: Path) -> dict[str, str]:
    """Agent id -> reason, as last saved; empty when there is no file (or it cannot be read, which is logged)."""
    try:
        data = json.loads(path.read_text())
        suspended = data["suspended"]
        if not isinstance(suspended, dict):
            raise ValueError("'suspended' is not an object")
        return {str(agent): str(reason) for agent, reason in suspended.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.error("cannot read the last known suspensions from %s (%s); none are in force until the collector answers",
                  path, e)  # fmt: skip
        return {}


def save(path: Path, suspended: dict[str, str]) -> None:
    replace_text(path, json.dumps({"suspended": suspended}, indent=1, sort_keys=True) + "\n")
