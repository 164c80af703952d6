import asyncio

import pytest

from bastion.proxy.ratelimit import Buckets, Full, Gate, Gcra, retry_after


def test_gcra_allows_a_burst_of_its_rate_then_one_per_interval() -> None:
    bucket = Gcra(rate=3, period=1.0)
    for _ in range(3):
        assert bucket.wait(10.0) == 0.0
        bucket.take(10.0)
    assert bucket.wait(10.0) == pytest.approx(1 / 3)
    assert bucket.wait(10.0 + 1 / 3) == 0.0


def test_a_cost_above_the_burst_passes_on_a_full_bucket_and_leaves_a_debt() -> None:
    bucket = Gcra(rate=100, period=60.0)
    assert bucket.wait(0.0, cost=500) == 0.0
    bucket.take(0.0, cost=500)
    assert bucket.wait(0.0, cost=1) == pytest.approx(240.6)


def test_usage_corrects_an_estimate_both_ways() -> None:
    bucket = Gcra(rate=60, period=60.0)
    bucket.take(0.0, cost=60)
    assert bucket.wait(0.0, cost=10) > 0
    bucket.adjust(0.0, -50)  # the call used 10 tokens, not 60
    assert bucket.wait(0.0, cost=10) == 0.0


def test_buckets_are_replaced_when_a_reload_changes_the_limit() -> None:
    buckets = Buckets()
    first = buckets.bucket(("agent", "a"), 1, 1.0)
    assert buckets.bucket(("agent", "a"), 1, 1.0) is first
    assert buckets.bucket(("agent", "a"), 2, 1.0).rate == 2


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert (retry_after(0.01), retry_after(1.0), retry_after(1.2)) == (1, 1, 2)


def test_a_gate_queues_then_refuses_when_its_queue_is_full_or_the_wait_ends() -> None:
    async def main() -> None:
        gate = Gate(limit=1, queue=1)
        await gate.acquire(1.0)
        waiting = asyncio.create_task(gate.acquire(5.0))
        await asyncio.sleep(0)
        with pytest.raises(Full):  # the queue holds one
            await gate.acquire(5.0)
        gate.release()  # the slot passes to the waiter
        await waiting
        assert gate.active == 1
        with pytest.raises(Full):  # waits, then gives up
            await gate.acquire(0.05)
        gate.release()
        assert gate.idle

    asyncio.run(main())
