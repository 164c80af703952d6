import asyncio
from collections.abc import Awaitable, Callable

import pytest

from bastion.collector.batcher import Batcher, Refused


class Sink:
    """A writer that records batches and can be held or made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def __call__(self, rows: list[int]) -> None:
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("store down")
        self.batches.append(rows)


def run(test: Callable[[Sink], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(Sink()), timeout=30))


def batcher(sink: Sink, batch_rows: int = 10, flush_interval: float = 60.0, **kw: int) -> Batcher[int]:
    b = Batcher(sink, batch_rows=batch_rows, flush_interval=flush_interval, **kw)
    b.start()
    return b


def test_small_submits_are_merged_into_one_write_when_the_batch_is_full() -> None:
    async def test(sink: Sink) -> None:
        b = batcher(sink, batch_rows=10)
        await asyncio.gather(*(b.submit([i]) for i in range(10)))
        assert sink.batches == [list(range(10))] and b.inserts == 1
        await b.close()

    run(test)


def test_a_partial_batch_is_written_after_the_interval() -> None:
    async def test(sink: Sink) -> None:
        b = batcher(sink, batch_rows=1000, flush_interval=0.05)
        await b.submit([1, 2, 3])  # returns only once written; the timeout in run() bounds it
        assert sink.batches == [[1, 2, 3]]
        await b.close()

    run(test)


def test_rows_arriving_during_a_write_join_the_next_batch() -> None:
    async def test(sink: Sink) -> None:
        b = batcher(sink, batch_rows=2)
        sink.gate.clear()
        first = asyncio.ensure_future(b.submit([1, 2]))
        await asyncio.sleep(0)
        later = [asyncio.ensure_future(b.submit([n])) for n in (3, 4, 5)]
        await asyncio.sleep(0)
        sink.gate.set()
        await asyncio.gather(first, *later)
        assert sink.batches == [[1, 2], [3, 4, 5]]
        await b.close()

    run(test)


def test_a_failed_write_refuses_its_rows_with_503() -> None:
    async def test(sink: Sink) -> None:
        b = batcher(sink, batch_rows=1)
        sink.fail = True
        with pytest.raises(Refused) as caught:
            await b.submit([1])
        assert caught.value.status == 503
        sink.fail = False
        await b.submit([2])
        assert sink.batches == [[2]]
        await b.close()

    run(test)


def test_a_full_buffer_refuses_new_rows_with_429() -> None:
    async def test(sink: Sink) -> None:
        b = batcher(sink, batch_rows=10, flush_interval=0.05, max_rows=20)
        sink.gate.clear()
        in_flight = asyncio.ensure_future(b.submit(list(range(10))))
        await asyncio.sleep(0)
        waiting = asyncio.ensure_future(b.submit(list(range(9))))
        await asyncio.sleep(0)
        assert b.buffered == 19
        with pytest.raises(Refused) as caught:
            await b.submit([1, 2])
        assert caught.value.status == 429
        sink.gate.set()
        await asyncio.gather(in_flight, waiting)
        await b.close()

    run(test)


def test_close_writes_what_is_buffered_and_then_refuses() -> None:
    async def test(sink: Sink) -> None:
        b = batcher(sink, batch_rows=100, flush_interval=60)
        pending = asyncio.ensure_future(b.submit([7]))
        await asyncio.sleep(0)
        await b.close()
        await pending
        assert sink.batches == [[7]]
        with pytest.raises(Refused, match="shutting down"):
            await b.submit([8])

    run(test)
