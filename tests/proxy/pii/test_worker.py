from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from bastion.proxy.pii.worker import StreamWorker


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


def test_chunks_are_rewritten_in_order_off_the_calling_thread(pool: ThreadPoolExecutor) -> None:
    threads: set[str] = set()

    def rewrite(chunk: bytes) -> list[bytes]:
        threads.add(threading.current_thread().name)
        return [chunk.upper()] if chunk else [b"!"]

    worker = StreamWorker(rewrite, pool, timeout=5)
    sent = [piece for chunk in (b"a", b"b", b"c", b"d") for piece in worker(chunk)]
    sent += worker(b"")
    assert b"".join(sent) == b"ABCD!"
    assert threading.current_thread().name not in threads


def test_a_failing_chunk_is_dropped_and_the_stream_goes_on(pool: ThreadPoolExecutor) -> None:
    def rewrite(chunk: bytes) -> list[bytes]:
        if chunk == b"bad":
            raise ValueError(chunk)
        return [chunk]

    worker = StreamWorker(rewrite, pool, timeout=5)
    assert b"".join(worker(b"one") + worker(b"bad") + worker(b"two") + worker(b"")) == b"onetwo"


def test_the_end_waits_at_most_the_timeout_and_drops_the_rest(pool: ThreadPoolExecutor) -> None:
    release = threading.Event()

    def rewrite(chunk: bytes) -> list[bytes]:
        release.wait(5)
        return [chunk]

    worker = StreamWorker(rewrite, pool, timeout=0.05)
    assert worker(b"slow") == [] and worker(b"") == []
    release.set()


def test_a_rewritten_chunk_is_announced_and_collected_without_waiting_for_the_next(pool: ThreadPoolExecutor) -> None:
    go, ready = threading.Event(), threading.Event()

    def rewrite(chunk: bytes) -> list[bytes]:
        go.wait(5)
        return [chunk.upper()]

    worker = StreamWorker(rewrite, pool, timeout=5, ready=ready.set)
    assert worker(b"event") == []  # still being analyzed
    go.set()
    assert ready.wait(5)
    assert worker.collect() == [b"EVENT"]
    assert worker(b"") == []
