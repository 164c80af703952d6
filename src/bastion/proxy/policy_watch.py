"""Hot reload: policy edits take effect within a second or two, and bad edits never do.

A rejected edit leaves the previous policy serving; it is logged and reported to ``on_rejected``
(the proxy records it as an alert span).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from bastion.proxy.policy import PolicyEngine, PolicyError

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5


class PolicyWatcher:
    def __init__(
        self,
        engine: PolicyEngine,
        on_rejected: Callable[[str], None],
        on_loaded: Callable[[str], None] | None = None,
        interval: float = POLL_SECONDS,
        also: Sequence[Callable[[], object]] = (),
    ) -> None:
        self.engine = engine
        self.also = also  # other files' checks (pii.yaml); a ValueError from one is a rejected edit
        self.on_rejected = on_rejected
        self.on_loaded = on_loaded
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policy-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def check(self) -> None:
        try:
            if self.engine.reload_if_changed() and self.on_loaded is not None:
                self.on_loaded(self.engine.version)
        except PolicyError as e:
            log.error("policy edit rejected; version %s keeps serving: %s", self.engine.version, e)
            self.on_rejected(str(e))
        except Exception as e:  # never let the watcher die, never fail open
            log.exception("policy reload failed; version %s keeps serving", self.engine.version)
            self.on_rejected(f"unexpected error while loading the policy: {e}")
        for check in self.also:
            try:
                check()
            except ValueError as e:
                log.error("edit rejected; the previous configuration keeps serving: %s", e)
                self.on_rejected(str(e))
            except Exception as e:
                log.exception("reload failed; the previous configuration keeps serving")
                self.on_rejected(f"unexpected error while reloading: {e}")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()
