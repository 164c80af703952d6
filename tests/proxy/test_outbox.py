import asyncio
import threading
import time
from pathlib import Path

import pytest

from bastion.proxy.outbox import Outbox, frame


def opened(path: Path, **kw: int) -> Outbox:
    return Outbox(path, **kw).open()


def payloads(outbox: Outbox) -> list[bytes]:
    return [r.payload for r in outbox.read(max_records=100_000)]


def test_records_from_many_threads_share_group_commits(tmp_path: Path) -> None:
    outbox = opened(tmp_path)

    def write(n: int) -> None:
        for i in range(50):
            outbox.append(f"{n}-{i}".encode())

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outbox.wait_durable(timeout=10)
    assert len(payloads(outbox)) == 400
    assert outbox.commits < 400  # records appended during an fsync join the next one
    outbox.close()


def test_a_torn_tail_is_cut_off_and_the_records_before_it_survive(tmp_path: Path) -> None:
    outbox = opened(tmp_path)
    for i in range(3):
        outbox.append(f"r{i}".encode(), seq=i + 1, hash_hex=f"{i + 1:064x}")
    outbox.wait_durable()
    outbox.close()
    (segment,) = tmp_path.glob("*.seg")
    with segment.open("ab") as f:
        f.write(frame(b"torn write", 4, f"{4:064x}")[:-3])  # a crash in the middle of a write

    outbox = opened(tmp_path)
    assert payloads(outbox) == [b"r0", b"r1", b"r2"]
    assert (outbox.chain_seq, outbox.chain_hash) == (3, f"{3:064x}")  # not the torn record
    outbox.append(b"r3")
    outbox.wait_durable()
    assert payloads(outbox) == [b"r0", b"r1", b"r2", b"r3"]
    outbox.close()


def test_acknowledged_segments_are_pruned_and_stay_acknowledged(tmp_path: Path) -> None:
    outbox = opened(tmp_path, segment_bytes=1024)
    for i in range(100):
        outbox.append(b"x" * 100 + str(i).encode(), seq=i + 1, hash_hex=f"{i + 1:064x}")
        if i % 10 == 9:
            outbox.wait_durable()  # a segment rolls after the commit that fills it
    assert len(outbox.segments()) > 5
    batch = outbox.read(max_records=60)
    outbox.acknowledge(batch[-1].end)
    assert outbox.segments()[0] == batch[-1].end.segment  # older segments are gone
    rest = outbox.read(max_records=1000)
    assert rest[0].payload == b"x" * 100 + b"60" and len(rest) == 40
    outbox.close()

    outbox = opened(tmp_path, segment_bytes=1024)
    assert len(payloads(outbox)) == 40  # the acknowledged 60 are not shipped again
    outbox.acknowledge(outbox.read(max_records=1000)[-1].end)
    outbox.close()

    outbox = opened(tmp_path, segment_bytes=1024)
    assert payloads(outbox) == []
    assert outbox.chain_seq == 100  # the chain continues after pruning and restart
    outbox.close()


def test_the_instance_id_is_stable_and_the_directory_has_one_owner(tmp_path: Path) -> None:
    first = opened(tmp_path)
    with pytest.raises(RuntimeError, match="in use by another proxy"):
        Outbox(tmp_path).open()
    first.close()
    second = opened(tmp_path)
    assert second.instance_id == first.instance_id and len(first.instance_id) == 32
    second.close()
    assert opened(tmp_path / "other").instance_id != first.instance_id


def test_the_event_loop_waits_for_durability_without_blocking(tmp_path: Path) -> None:
    outbox = opened(tmp_path)

    async def respond() -> bool:
        outbox.append(b"a")
        return await outbox.durable(timeout=5)

    assert asyncio.run(respond())
    outbox.close()


def test_a_failing_disk_does_not_hold_traffic_and_records_wait_in_memory(tmp_path: Path) -> None:
    outbox = opened(tmp_path)
    real = outbox._commit
    calls = {"n": 0}

    def failing(batch: list[bytes]) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            outbox.failures += 1
            return False
        return real(batch)

    outbox._commit = failing  # type: ignore[method-assign]
    outbox.append(b"kept")
    assert outbox.wait_durable(timeout=5)  # released at once, not held
    deadline = time.monotonic() + 5
    while not payloads(outbox) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert payloads(outbox) == [b"kept"] and outbox.healthy
    outbox.close()
