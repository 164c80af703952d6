"""Tells people about each new pending approval: a Slack-compatible ``{"text": ...}`` POST.

Runs as a background task of the collector, never on a call's path; retries with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

log = logging.getLogger(__name__)
ATTEMPTS = 4
FIRST_BACKOFF = 0.5


def message(approval: dict[str, Any]) -> str:
    return (
        f"Bastion: approval {approval['id']} is waiting. Agent {approval['agent_id']} wants "
        f"{approval['action']} on {approval['target']} (rule {approval['rule']}). "
        f"Trace {approval.get('trace_id') or 'unknown'}. Approve or deny it on the dashboard's Approvals page "
        f"or with `bastion approvals approve {approval['id']}`."
    )


def notifier(
    url: str, attempts: int = ATTEMPTS, backoff: float = FIRST_BACKOFF
) -> Callable[[Any], Coroutine[Any, Any, None]]:
    async def notify(approval: dict[str, Any]) -> None:
        delay = backoff
        async with httpx.AsyncClient(timeout=5.0) as client:
            for attempt in range(1, attempts + 1):
                try:
                    r = await client.post(url, json={"text": message(approval), "approval": approval})
                    if r.is_success:
                        return
                    log.warning("approval webhook answered %s (attempt %d)", r.status_code, attempt)
                except httpx.HTTPError as e:
                    log.warning("approval webhook failed (attempt %d): %s", attempt, e)
                if attempt < attempts:
                    await asyncio.sleep(delay)
                    delay *= 2
        log.error("approval webhook gave up on approval %s", approval["id"])

    return notify
