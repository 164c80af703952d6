"""Tells people about each new pending approval and each budget alert: a Slack-compatible
``{"text": ...}`` POST.

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
        body = {"text": message(approval), "approval": approval}
        await post(url, body, f"approval {approval['id']}", attempts, backoff)

    return notify


async def post(
    url: str, body: dict[str, Any], what: str, attempts: int = ATTEMPTS, backoff: float = FIRST_BACKOFF
) -> None:
    """POST ``body`` to the webhook, retrying with backoff; failures are logged, never raised."""
    delay = backoff
    async with httpx.AsyncClient(timeout=5.0) as client:
        for attempt in range(1, attempts + 1):
            try:
                r = await client.post(url, json=body)
                if r.is_success:
                    return
                log.warning("webhook answered %s for %s (attempt %d)", r.status_code, what, attempt)
            except httpx.HTTPError as e:
                log.warning("webhook failed for %s (attempt %d): %s", what, attempt, e)
            if attempt < attempts:
                await asyncio.sleep(delay)
                delay *= 2
    log.error("webhook gave up on %s", what)
