"""The proxy's side of human control: the collector's approvals and agent-state API.

One :class:`Control` per proxy holds the approvals settings, an HTTP client to the collector, and
what it last learned of agents' state (suspended, guidance waiting), polled every
``POLL_SECONDS`` in the background so that a suspension reaches every replica within a second.
With a ``suspensions_file``, the suspensions it last heard of survive a restart (``suspensions.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from bastion.approval_config import ApprovalConfig
from bastion.proxy import suspensions

log = logging.getLogger(__name__)
# httpx logs every request at INFO; the agents' state is polled twice a second.
logging.getLogger("httpx").setLevel(logging.WARNING)
Json = dict[str, Any]
POLL_SECONDS = 0.5
WAIT_SLICE_SECONDS = 2.0


class Control:
    def __init__(
        self,
        collector_url: str,
        config: ApprovalConfig,
        proxy_name: str = "",
        headers: Mapping[str, str] | None = None,
        suspensions_file: Path | None = None,
    ) -> None:
        self.base_url = collector_url.rstrip("/")
        self.headers = dict(headers or {})  # the proxy credential
        # Replaced when bastion.yaml's approvals section changes (proxy/watch.py).
        self.config = config
        self.proxy_name = proxy_name
        self.suspensions_file = suspensions_file
        # agent id -> reason; until the collector answers, what this proxy last heard of
        self.suspended: dict[str, str] = suspensions.load(suspensions_file) if suspensions_file else {}
        self.guidance: dict[str, list[str]] = {}  # agent id -> guidance ids waiting
        # Suspensions this proxy made (a tripped breaker) that the collector's state does not show yet.
        self._suspending: dict[str, str] = {}
        self._client: httpx.AsyncClient | None = None
        self._poller: asyncio.Task[None] | None = None

    def holds_reviews(self) -> bool:
        """Whether a review holds the call for a human (approvals configured) or is refused at once."""
        return self.config.enabled

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
            self._client = httpx.AsyncClient(base_url=self.base_url, timeout=10.0, limits=limits, headers=self.headers)
        return self._client

    # Lifecycle, started and stopped by the Intervene addon.

    def start(self) -> None:
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _poll(self) -> None:
        failed = False
        while True:
            try:
                await self.refresh()
                failed = False
            except (httpx.HTTPError, ValueError) as e:
                if not failed:  # log once per outage; the last known state stays in force
                    log.warning("cannot read agents' state from the collector at %s: %s", self.base_url, e)
                failed = True
            await asyncio.sleep(POLL_SECONDS)

    async def refresh(self) -> None:
        r = await self.client.get("/api/agents/state", timeout=5.0)
        r.raise_for_status()
        agents = r.json()["agents"]
        suspended = {a: str(s.get("reason") or "") for a, s in agents.items() if s.get("suspended")}
        for agent in list(self._suspending):  # kept until the collector shows it (then a human may resume)
            if agent in suspended:
                del self._suspending[agent]
            else:
                suspended[agent] = self._suspending[agent]
        if suspended != self.suspended and self.suspensions_file is not None:
            await asyncio.to_thread(suspensions.save, self.suspensions_file, suspended)
        self.suspended = suspended
        self.guidance = {a: [g["id"] for g in s.get("guidance", [])] for a, s in agents.items() if s.get("guidance")}

    # Approvals

    async def create(self, context: Json) -> Json:
        r = await self.client.post("/api/approvals", json=context)
        r.raise_for_status()
        return dict(r.json())

    async def wait(self, approval_id: str, timeout: float) -> Json:
        r = await self.client.get(
            f"/api/approvals/{approval_id}/wait", params={"timeout": timeout}, timeout=timeout + 10
        )
        r.raise_for_status()
        return dict(r.json())

    async def close(self, approval_id: str, status: str) -> Json:
        r = await self.client.post(f"/api/approvals/{approval_id}/close", json={"status": status})
        r.raise_for_status()
        return dict(r.json())

    # The kill switch, pulled by a tripped breaker (limits: suspend_on_trip)

    async def suspend(self, agent_id: str, reason: str) -> None:
        """Suspend ``agent_id`` here at once and, through the collector, on every replica until a human resumes it."""
        self.suspended[agent_id] = self._suspending[agent_id] = reason
        r = await self.client.post(f"/api/agents/{agent_id}/suspend", json={"reason": reason})
        r.raise_for_status()

    # Guidance

    async def claim(self, agent_id: str, guidance_id: str) -> Json | None:
        """The guidance message, if this proxy is the one to deliver it."""
        r = await self.client.post(f"/api/agents/{agent_id}/guidance/{guidance_id}/claim")
        if r.status_code in (404, 409):
            return None
        r.raise_for_status()
        return dict(r.json())
