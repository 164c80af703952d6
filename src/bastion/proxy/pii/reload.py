"""Hot reload of ``policies/pii.yaml``, like the other policy files.

An edit that does not validate keeps the previous configuration serving and is reported (the
policy watcher records it as an alert). Adding the file switches redaction on. Removing it does
not switch redaction off while running (an editor that deletes before it writes would open a gap):
that is reported, and takes effect at the next start.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from bastion.files import stamp
from bastion.proxy.pii import config as pii_config
from bastion.proxy.pii.config import PiiConfig

log = logging.getLogger(__name__)


class Reloadable(Protocol):
    def reload(self, config: PiiConfig) -> None: ...


class PiiReloader:
    def __init__(self, policies_dir: Path, redaction: Reloadable) -> None:
        self.path = policies_dir / pii_config.FILE_NAME
        self.policies_dir = policies_dir
        self.redaction = redaction
        self._stamp = stamp(self.path)

    def check(self) -> bool:
        """Reload if the file changed; raises ValueError (naming the problem) if it cannot be served."""
        current = stamp(self.path)
        if current == self._stamp:
            return False
        self._stamp = current
        config = pii_config.load(self.policies_dir)  # ConfigError (a ValueError) on a bad edit
        if config is None:
            raise ValueError(f"{self.path} was removed; redaction keeps its configuration until the proxy restarts")
        self.redaction.reload(config)
        log.info("%s reloaded", self.path)
        return True
