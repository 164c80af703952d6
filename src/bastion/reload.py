"""Hot reload: one mechanism every consumer of the policies folder subscribes to.

A :class:`Reloader` runs one thread that asks each subscription, twice a second, whether its files
changed and to load them if so. A subscription's ``check`` returns whether it loaded a new
version; it raises ``ValueError`` (naming the file and the problem) when an edit cannot be served,
and keeps its last good version serving. The Reloader logs the rejected edit and reports it to
``on_rejected`` with the subscription's alert type (the proxy records it as an alert span). No
error from one subscription stops the others or the thread, and none fails open.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bastion.files import Stamp, stamp

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
DEFAULT_ALERT = "policy_rejected"

Check = Callable[[], bool]


@dataclass(frozen=True)
class Subscription:
    name: str
    check: Check
    alert: str


def when_changed(paths: Callable[[], Iterable[Path]], load: Callable[[], None]) -> Check:
    """A check that calls ``load`` when any of ``paths`` changed (mtime and size). The change is
    taken in before loading, so a rejected edit is reported once, not on every poll."""
    seen: list[tuple[Path, Stamp]] = [(p, stamp(p)) for p in paths()]

    def check() -> bool:
        nonlocal seen
        current = [(p, stamp(p)) for p in paths()]
        if current == seen:
            return False
        seen = current
        load()
        return True

    return check


class Reloader:
    def __init__(self, on_rejected: Callable[[str, str], None], interval: float = POLL_SECONDS) -> None:
        self.on_rejected = on_rejected
        self.interval = interval
        self.subscriptions: list[Subscription] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bastion-reloader", daemon=True)

    def subscribe(self, name: str, check: Check, alert: str = DEFAULT_ALERT) -> None:
        self.subscriptions.append(Subscription(name, check, alert))

    def check(self) -> list[str]:
        """Check every subscription once; the names of those that loaded a new version."""
        loaded = []
        for sub in self.subscriptions:
            try:
                if sub.check():
                    loaded.append(sub.name)
                    log.info("%s reloaded", sub.name)
            except ValueError as e:
                log.error("%s: edit rejected; the previous version keeps serving: %s", sub.name, e)
                self._report(str(e), sub.alert)
            except Exception as e:  # never let the thread die, never fail open
                log.exception("%s: reload failed; the previous version keeps serving", sub.name)
                self._report(f"unexpected error while reloading {sub.name}: {e}", sub.alert)
        return loaded

    def _report(self, message: str, alert: str) -> None:
        try:
            self.on_rejected(message, alert)
        except Exception:
            log.exception("could not report a rejected edit")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()
