"""Rate and concurrency limits as plain values in memory: GCRA buckets and slot gates.

State is per process: with N replicas behind a balancer, each enforces the limits on the calls it
sees, so an agent spread evenly over them gets up to N times a rate (configure a replica's share).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass
class Gcra:
    """The Generic Cell Rate Algorithm (a token bucket kept as one timestamp): ``rate`` units per
    ``period`` seconds, with bursts up to ``rate`` units. ``tat`` is the theoretical arrival time."""

    rate: float
    period: float
    tat: float = 0.0

    @property
    def interval(self) -> float:
        return self.period / self.rate

    def wait(self, now: float, cost: float = 1.0) -> float:
        """Seconds until ``cost`` units could be taken (0.0: now). A cost above the whole burst
        counts as the burst: it passes once the bucket is full."""
        allow_at = max(self.tat, now) + min(cost, self.rate) * self.interval - self.period
        wait = allow_at - now
        return wait if wait > 1e-9 else 0.0  # rounding in the sums is not a wait

    def take(self, now: float, cost: float = 1.0) -> None:
        """Take ``cost`` units (after ``wait`` said 0.0)."""
        self.tat = max(self.tat, now) + cost * self.interval

    def adjust(self, now: float, units: float) -> None:
        """Charge ``units`` more (or give back, when negative) after the fact: usage corrects an estimate."""
        self.tat = max(self.tat, now - self.period) + units * self.interval


class Buckets:
    """GCRA buckets by key, the least recently used dropped beyond ``size``."""

    def __init__(self, size: int = 100_000, clock: Clock = time.monotonic) -> None:
        self.size = size
        self.clock = clock
        self._buckets: OrderedDict[tuple[str, ...], Gcra] = OrderedDict()

    def bucket(self, key: tuple[str, ...], rate: float, period: float) -> Gcra:
        found = self._buckets.get(key)
        if found is None or found.rate != rate or found.period != period:  # a reload changed the limit
            found = self._buckets[key] = Gcra(rate, period, found.tat if found else 0.0)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self.size:
            self._buckets.popitem(last=False)
        return found


def retry_after(seconds: float) -> int:
    """Whole seconds for a Retry-After header: rounded up, at least 1."""
    return max(1, math.ceil(seconds))


class Full(Exception):
    """No slot was free and the queue was full, or the wait timed out."""


class Gate:
    """At most ``limit`` holders at once; up to ``queue`` more wait (first come, first served) for at
    most their timeout. Waiting is asynchronous: other flows keep flowing."""

    def __init__(self, limit: int, queue: int) -> None:
        self.limit = limit
        self.queue = queue
        self.active = 0
        self._waiters: OrderedDict[int, asyncio.Future[None]] = OrderedDict()
        self._next = 0

    async def acquire(self, timeout: float) -> None:
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return
        if len(self._waiters) >= self.queue:
            raise Full
        ticket, self._next = self._next, self._next + 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[ticket] = future
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            self._waiters.pop(ticket, None)
            if future.done() and not future.cancelled():  # handed a slot just as the wait ran out
                self.release()
            future.cancel()
            raise Full from None

    def release(self) -> None:
        while self._waiters:
            _, future = self._waiters.popitem(last=False)
            if not future.done():
                future.set_result(None)  # the slot passes to the first waiter
                return
        self.active = max(0, self.active - 1)

    @property
    def idle(self) -> bool:
        return self.active == 0 and not self._waiters
