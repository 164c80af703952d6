"""Durability: a response waits until the outbox has the call's spans on disk; internal calls do not wait."""

import asyncio
from pathlib import Path

from mitmproxy import http

from bastion.proxy.outbox import Outbox
from bastion.proxy.state import INTERNAL
from factories.addons import call_flow, durability


async def waits(outbox: Outbox, f: http.HTTPFlow, hook: str = "response") -> bool:
    """Whether the hook is still waiting after the event loop had every chance to run it."""
    task = asyncio.get_running_loop().create_task(getattr(durability(outbox), hook)(f))
    for _ in range(20):
        await asyncio.sleep(0)
    waiting = not task.done()
    outbox.open()  # the writer starts, fsyncs what is pending and releases the wait
    await task
    outbox.close()
    return waiting


def pending(tmp_path: Path) -> Outbox:
    """An outbox holding one record that is not on disk yet (its writer not started)."""
    outbox = Outbox(tmp_path / "outbox")
    outbox.append(b"the call's span")
    return outbox


def test_a_response_waits_until_the_calls_record_is_on_disk(tmp_path: Path) -> None:
    outbox = pending(tmp_path)
    assert asyncio.run(waits(outbox, call_flow()))
    assert outbox.wait_durable(timeout=0)


def test_a_failed_call_waits_too(tmp_path: Path) -> None:
    assert asyncio.run(waits(pending(tmp_path), call_flow(), "error"))


def test_internal_calls_do_not_wait(tmp_path: Path) -> None:
    f = call_flow()
    f.metadata[INTERNAL] = True
    assert not asyncio.run(waits(pending(tmp_path), f))
