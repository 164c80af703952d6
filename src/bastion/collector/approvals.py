"""Approvals and agent controls, held by the collector so that every proxy replica shares them.

The collector is the one process that owns the store, so it owns these records too: they live
in memory (with an :class:`asyncio.Event` per pending approval, so waiting proxies learn a
decision at once) and every change is written to the ``bastion_controls`` table, from which
they are loaded again at start-up. A record is a JSON document; the newest version wins.

Three kinds of record:

- ``approval``: a held call with its context; pending until approved, denied, timed out or
  abandoned by its proxy. It is bound to the exact call (``call_digest``: agent, target, action and
  arguments) and carries the arguments in clear only sealed (``collector/sealing.py``), until decided.
- ``grant``: an approval's scope. Approving a call whose rule has a scope (``calls`` and/or
  ``minutes``) lets the same agent's next calls under the same rule through without a human. The
  scope comes from the collector's own ``bastion.yaml``, never from the request.
- ``agent``: whether an agent is suspended, and guidance messages waiting for its next model call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

from bastion.approval_config import call_digest
from bastion.collector import schema
from bastion.collector.sealing import Sealer
from bastion.collector.store import Store

log = logging.getLogger(__name__)
Json = dict[str, Any]

TABLE: Final = schema.CONTROLS_TABLE
PENDING: Final = "pending"
APPROVED: Final = "approved"
DENIED: Final = "denied"
TIMEOUT: Final = "timeout"
ABANDONED: Final = "abandoned"
STATUSES: Final = (PENDING, APPROVED, DENIED, TIMEOUT, ABANDONED)
CLOSING: Final = (TIMEOUT, ABANDONED)
_CONTEXT_FIELDS: Final = (
    "agent_id",
    "role",
    "kind",
    "target",
    "action",
    "arguments",
    "messages",
    "rule",
    "reason",
    "policy_version",
    "trace_id",
    "span_id",
    "proxy",
    "timeout_seconds",
)
# Largest clear arguments sealed for approvers; larger ones are shown redacted only.
MAX_SEALED_BYTES: Final = 64 * 1024

_LOAD: Final = """\
SELECT Kind, Id, argMax(Body, Version) FROM {db:Identifier}.{table:Identifier}
WHERE Kind IN ('approval', 'grant', 'agent')
GROUP BY Kind, Id"""


class Conflict(Exception):
    """The record is not in a state that allows the change (e.g. already decided)."""


class Board:
    """Every approval, grant and agent control, in memory, written through to the store."""

    def __init__(
        self,
        store: Store | None,
        notify: Callable[[Json], Coroutine[Any, Any, None]] | None = None,
        *,
        scope_for: Callable[[str], Json | None] = lambda rule: None,
        sealer: Sealer | None = None,
    ) -> None:
        self.store = store
        self.notify = notify
        # The scope of a rule's approvals, from the collector's configuration.
        self.scope_for = scope_for
        self.sealer = sealer
        self.approvals: dict[str, Json] = {}
        self.grants: dict[str, Json] = {}
        self.agents: dict[str, Json] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()
        self._version = time.time_ns()
        self._tasks: set[asyncio.Task[None]] = set()

    # Persistence

    def load(self) -> None:
        """Create the table if needed and read every record (blocking: call from a thread)."""
        if self.store is None:
            return
        names = {"db": self.store.database, "table": TABLE}
        self.store.command(schema.controls_ddl(self.store.database), {})
        for kind, _, body in self.store.rows(_LOAD, names):
            record = json.loads(body)
            {"approval": self.approvals, "grant": self.grants, "agent": self.agents}[kind][_key(kind, record)] = record
        # A call still pending from before a restart is past waiting for once its time is up.
        now = time.time()
        for record in self.approvals.values():
            if record["status"] == PENDING and record["created"] + float(record.get("timeout_seconds") or 0) < now:
                record.update(status=TIMEOUT, decided=now)
                record.pop("arguments_sealed", None)

    async def _save(self, kind: str, record: Json) -> None:
        if self.store is None:
            return
        self._version = max(self._version + 1, time.time_ns())
        row = [kind, _key(kind, record), self._version, json.dumps(record, default=str)]
        await asyncio.to_thread(self.store.insert_rows, TABLE, [row], ["Kind", "Id", "Version", "Body"])

    # Approvals

    async def create(self, context: Json) -> Json:
        """A new approval request; approved at once when an earlier approval's grant covers it."""
        now = time.time()
        record: Json = {k: context.get(k) for k in _CONTEXT_FIELDS}
        record["scope"] = self.scope_for(str(record["rule"]))
        clear = context.get("arguments_clear", record["arguments"])
        record["call_digest"] = call_digest(
            str(record["agent_id"]), str(record["target"]), str(record.get("action") or ""), clear
        )
        if self.sealer is not None and "arguments_clear" in context:
            sealed = self.sealer.seal(clear)
            if len(sealed) <= MAX_SEALED_BYTES:
                record["arguments_sealed"] = sealed
        record.update(id=secrets.token_hex(8), status=PENDING, created=now, decided=None)
        record.update(approver=None, approver_id=None, decision_reason=None, grant=None)
        async with self._lock:
            grant = self._use_grant(str(record["agent_id"]), str(record["rule"]), now)
            if grant is not None:
                record.update(status=APPROVED, decided=now, approver=grant["approver"])
                record.update(approver_id=grant["approver_id"], grant=grant["id"])
                record["decision_reason"] = f"covered by approval {grant['approval']}: {grant['reason']}"
                record.pop("arguments_sealed", None)
                await self._save("grant", grant)
            self.approvals[record["id"]] = record
            self._events[record["id"]] = asyncio.Event()
            await self._save("approval", record)
        if record["status"] == PENDING and self.notify is not None:
            task = asyncio.create_task(self.notify(dict(record)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return record

    def _use_grant(self, agent_id: str, rule: str, now: float) -> Json | None:
        for grant in self.grants.values():
            if grant["agent_id"] != agent_id or grant["rule"] != rule:
                continue
            if grant["expires"] is not None and grant["expires"] <= now:
                continue
            if grant["remaining"] is not None:
                if grant["remaining"] <= 0:
                    continue
                grant["remaining"] -= 1
            return grant
        return None

    def get(self, approval_id: str) -> Json | None:
        return self.approvals.get(approval_id)

    def list(self, status: str | None, limit: int) -> list[Json]:
        found = [a for a in self.approvals.values() if status is None or a["status"] == status]
        found.sort(key=lambda a: (a["decided"] or a["created"]) if status != PENDING else a["created"], reverse=True)
        return found[:limit]

    def view(self, record: Json, *, clear: bool) -> Json:
        """A record as the API shows it: never the sealed form; with ``clear`` (approvers reading a
        pending call), the arguments in clear as ``arguments_clear``."""
        shown = {k: v for k, v in record.items() if k != "arguments_sealed"}
        sealed = record.get("arguments_sealed")
        if clear and sealed and self.sealer is not None:
            shown["arguments_clear"] = self.sealer.unseal(str(sealed))
        return shown

    async def decide(self, approval_id: str, approve: bool, reason: str, approver: Json) -> Json:
        async with self._lock:
            record = self._pending(approval_id)
            now = time.time()
            record.update(status=APPROVED if approve else DENIED, decided=now, decision_reason=reason)
            record.update(approver=approver["name"], approver_id=approver["id"])
            record.pop("arguments_sealed", None)  # decided: the clear form is no longer needed
            scope = record.get("scope") or {}
            if approve and (scope.get("calls") or scope.get("minutes")):
                grant: Json = {
                    "id": secrets.token_hex(8),
                    "agent_id": record["agent_id"],
                    "rule": record["rule"],
                    "remaining": int(scope["calls"]) if scope.get("calls") else None,
                    "expires": now + float(scope["minutes"]) * 60 if scope.get("minutes") else None,
                    "approval": approval_id,
                    "approver": approver["name"],
                    "approver_id": approver["id"],
                    "reason": reason,
                    "created": now,
                }
                self.grants[grant["id"]] = grant
                record["granted"] = grant["id"]
            # The waiting proxy goes on at once; the store write (which may queue behind a span
            # insert) follows. The call's own span records the outcome in any case.
            self._wake(approval_id)
            if record.get("granted"):
                await self._save("grant", self.grants[record["granted"]])
            await self._save("approval", record)
        return record

    async def close(self, approval_id: str, status: str) -> Json:
        """A proxy gave up on a pending approval (timeout or abandoned); a decided one stays decided."""
        if status not in CLOSING:
            raise ValueError(f"status must be one of {CLOSING}, not {status!r}")
        async with self._lock:
            record = self.approvals.get(approval_id)
            if record is None:
                raise KeyError(approval_id)
            if record["status"] != PENDING:
                return record
            record.update(status=status, decided=time.time())
            record.pop("arguments_sealed", None)
            await self._save("approval", record)
            self._wake(approval_id)
        return record

    async def wait(self, approval_id: str, timeout: float) -> Json:
        record = self.approvals.get(approval_id)
        if record is None:
            raise KeyError(approval_id)
        event = self._events.setdefault(approval_id, asyncio.Event())
        if record["status"] == PENDING:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        return self.approvals[approval_id]

    def _pending(self, approval_id: str) -> Json:
        record = self.approvals.get(approval_id)
        if record is None:
            raise KeyError(approval_id)
        if record["status"] != PENDING:
            raise Conflict(f"Approval {approval_id} is already {record['status']}.")
        return record

    def _wake(self, approval_id: str) -> None:
        event = self._events.pop(approval_id, None)
        if event is not None:
            event.set()

    # Agents: suspension and guidance

    def agent(self, agent_id: str) -> Json:
        return self.agents.setdefault(
            agent_id, {"agent_id": agent_id, "suspended": False, "by": None, "reason": None, "guidance": []}
        )

    async def suspend(self, agent_id: str, suspended: bool, reason: str, approver: Json) -> Json:
        async with self._lock:
            record = self.agent(agent_id)
            record.update(suspended=suspended, by=approver["name"], reason=reason, updated=time.time())
            await self._save("agent", record)
        return record

    async def guide(self, agent_id: str, text: str, approver: Json) -> Json:
        async with self._lock:
            record = self.agent(agent_id)
            guidance = {"id": secrets.token_hex(6), "text": text, "by": approver["name"], "created": time.time()}
            guidance["delivered"] = None
            record["guidance"].append(guidance)
            await self._save("agent", record)
        return guidance

    async def claim(self, agent_id: str, guidance_id: str) -> Json:
        """Hand a guidance message to one proxy, once."""
        async with self._lock:
            record = self.agents.get(agent_id)
            found = [g for g in (record or {}).get("guidance", []) if g["id"] == guidance_id]
            if not found:
                raise KeyError(guidance_id)
            if found[0]["delivered"] is not None:
                raise Conflict(f"Guidance {guidance_id} was already delivered.")
            found[0]["delivered"] = time.time()
            assert record is not None
            await self._save("agent", record)
        return dict(found[0])

    def agent_state(self) -> Json:
        """What proxies poll: suspended agents and undelivered guidance."""
        agents: Json = {}
        for agent_id, record in self.agents.items():
            pending = [{"id": g["id"]} for g in record["guidance"] if g["delivered"] is None]
            if record["suspended"] or pending:
                agents[agent_id] = {"suspended": record["suspended"], "reason": record["reason"], "guidance": pending}
        return {"agents": agents}

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()


def _key(kind: str, record: Json) -> str:
    return str(record["agent_id"] if kind == "agent" else record["id"])
