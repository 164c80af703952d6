"""Batched inserts: many small exports become a few large INSERTs.

Rows accumulate until ``batch_rows`` are buffered or ``flush_interval`` seconds have passed since
the first one, whichever comes first. One writer task runs the flushes one after another, so rows
that arrive during an INSERT join the next batch. :meth:`Batcher.submit` returns only once the
batch holding its rows is written, and raises :class:`Refused` when it was not (store down) or
would not be (buffer full, shutting down), so the sender keeps its copy and retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger(__name__)


class Refused(Exception):
    """Rows not accepted or not written; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Batcher[T]:
    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[None]],
        *,
        batch_rows: int,
        flush_interval: float,
        max_rows: int | None = None,
    ) -> None:
        self.batch_rows = max(1, batch_rows)
        self.flush_interval = flush_interval
        self.max_rows = max_rows if max_rows is not None else 10 * self.batch_rows
        self.inserts = 0
        """How many writes ran (successful or not): lets tests and metrics see the batching."""
        self._write = write
        self._rows: list[T] = []
        self._written: asyncio.Future[None] | None = None
        self._in_flight = 0
        self._due = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def buffered(self) -> int:
        """Rows waiting for or inside the current write."""
        return len(self._rows) + self._in_flight

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="bastion-batcher")

    async def close(self) -> None:
        """Refuse new rows, write what is buffered, and stop."""
        self._closing = True
        self._due.set()
        if self._task is not None:
            await self._task

    async def submit(self, rows: Sequence[T]) -> None:
        """Buffer ``rows`` and wait until the batch that holds them is written."""
        if not rows:
            return
        if self._closing or self._task is None:
            raise Refused("The collector is not accepting spans (shutting down).", status=503)
        if self.buffered and self.buffered + len(rows) > self.max_rows:
            raise Refused(f"The collector is busy: {self.buffered} spans are waiting. Retry later.", 429)
        self._rows.extend(rows)
        if self._written is None:
            loop = asyncio.get_running_loop()
            self._written = loop.create_future()
            self._written.add_done_callback(_consume)
            self._timer = loop.call_later(self.flush_interval, self._due.set)
        written = self._written
        if len(self._rows) >= self.batch_rows:
            self._due.set()
        await asyncio.shield(written)

    async def _run(self) -> None:
        while True:
            await self._due.wait()
            self._due.clear()
            if self._rows:
                await self._flush()
            if self._closing and not self._rows:
                return
            if len(self._rows) >= self.batch_rows or self._closing:
                self._due.set()

    async def _flush(self) -> None:
        rows, written = self._rows, self._written
        self._rows, self._written = [], None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._in_flight = len(rows)
        self.inserts += 1
        try:
            await self._write(rows)
        except asyncio.CancelledError:
            if written is not None:
                written.set_exception(Refused("The collector stopped before writing.", status=503))
            raise
        except Exception as e:
            log.warning("Writing %d spans failed: %s", len(rows), e)
            if written is not None:
                written.set_exception(Refused("The span store is unavailable. Retry later.", status=503))
        else:
            if written is not None:
                written.set_result(None)
        finally:
            self._in_flight = 0


def _consume(future: asyncio.Future[None]) -> None:
    """Mark a failure as seen, so a sender that went away leaves no 'never retrieved' warning."""
    if not future.cancelled():
        future.exception()
