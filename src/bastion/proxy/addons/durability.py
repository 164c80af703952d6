"""Holds each response until the call's spans are fsync'd in the outbox (one group commit).

Runs after Tracing, which ends the call's span in the same hooks. A proxy SIGKILLed right after
it answered has therefore already persisted the call's audit record. Streamed bodies have
reached the client before the span ends; their record is durable a group commit later. If the
disk fails, the outbox releases the wait at once (see ``bastion.proxy.outbox``): traffic goes on.
"""

from __future__ import annotations

from mitmproxy import http

from bastion.proxy.outbox import Outbox
from bastion.proxy.state import INTERNAL


class Durability:
    def __init__(self, outbox: Outbox, timeout: float = 2.0) -> None:
        self.outbox = outbox
        self.timeout = timeout

    async def response(self, flow: http.HTTPFlow) -> None:
        await self._wait(flow)

    async def error(self, flow: http.HTTPFlow) -> None:
        await self._wait(flow)

    async def _wait(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(INTERNAL):
            return
        await self.outbox.durable(timeout=self.timeout)
