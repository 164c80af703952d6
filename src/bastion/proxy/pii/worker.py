"""Streamed answers analyzed off the event loop.

mitmproxy calls a response's ``stream`` callback on its event loop, synchronously, once per chunk
from upstream. ``StreamWorker`` queues each chunk for a thread pool, which rewrites the chunks of
one stream in order, and hands back whatever the pool has finished: the event loop only queues and
collects. A chunk's rewrite therefore reaches the agent with a later chunk (usually the next one).
At the end of the stream (the empty chunk) the loop waits for the rest, at most ``timeout``
seconds; past that the rest is dropped (fail closed) and logged.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

log = logging.getLogger(__name__)

Rewrite = Callable[[bytes], list[bytes]]


class StreamWorker:
    def __init__(self, rewrite: Rewrite, pool: Executor, timeout: float) -> None:
        self.rewrite, self.pool, self.timeout = rewrite, pool, timeout
        self._lock = threading.Lock()
        self._inbox: deque[bytes] = deque()
        self._outbox: list[bytes] = []
        self._draining = False
        self._ended = threading.Event()

    def __call__(self, chunk: bytes) -> list[bytes]:
        with self._lock:
            self._inbox.append(chunk)
            if not self._draining:
                self._draining = True
                self.pool.submit(self._drain)
        if not chunk and not self._ended.wait(self.timeout):
            log.error("PII analysis of a streamed answer took over %.1f s; the rest is dropped", self.timeout)
        with self._lock:
            out, self._outbox = self._outbox, []
        return [b"".join(out)] if out else []

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._inbox:
                    self._draining = False
                    return
                chunk = self._inbox.popleft()
            try:
                out = self.rewrite(chunk)
            except Exception:
                log.exception("could not rewrite a streamed chunk; it is dropped")
                out = []
            with self._lock:
                self._outbox += out
            if not chunk:
                self._ended.set()
