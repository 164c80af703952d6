"""Streamed answers analyzed off the event loop.

mitmproxy calls a response's ``stream`` callback on its event loop, synchronously, once per chunk
from upstream. ``StreamWorker`` queues each chunk for a thread pool, which rewrites the chunks of
one stream in order; the event loop only queues and collects. As soon as a chunk's rewrite is ready
the worker calls ``ready`` (from the pool's thread), which makes mitmproxy call the stream callback
again (:mod:`bastion.proxy.push`); the callback then collects it. So a chunk reaches the agent when
it is analyzed, not when upstream sends its next chunk. Without ``ready``, output goes out with the
next chunk. At the end of the stream (the empty chunk) the loop waits for the rest, at most
``timeout`` seconds; past that the rest is dropped (fail closed) and logged.
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
    def __init__(
        self, rewrite: Rewrite, pool: Executor, timeout: float, ready: Callable[[], None] | None = None
    ) -> None:
        self.rewrite, self.pool, self.timeout, self.ready = rewrite, pool, timeout, ready
        self._lock = threading.Lock()
        self._inbox: deque[bytes] = deque()
        self._outbox: list[bytes] = []
        self._draining = False
        self._ended = threading.Event()
        self.streaming = True  # False once the end of the stream was handed in

    def __call__(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            self.streaming = False
        with self._lock:
            self._inbox.append(chunk)
            if not self._draining:
                self._draining = True
                self.pool.submit(self._drain)
        if not chunk and not self._ended.wait(self.timeout):
            log.error("PII analysis of a streamed answer took over %.1f s; the rest is dropped", self.timeout)
        return self.collect()

    def collect(self) -> list[bytes]:
        """What the pool has finished and nobody has sent yet (never an empty chunk: mitmproxy would
        write it as the end of a chunked response)."""
        with self._lock:
            out, self._outbox = b"".join(self._outbox), []
        return [out] if out else []

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
            elif out and self.ready is not None and self.streaming:
                try:
                    self.ready()
                except Exception:
                    log.exception("could not send a rewritten chunk early; it goes with the next one")
