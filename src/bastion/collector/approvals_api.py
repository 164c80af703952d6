"""The approvals and agent-control API.

Proxies only (the proxy credential): ``POST /api/approvals`` (hold a call), ``GET
/api/approvals/{id}/wait?timeout=`` (long-poll for the decision), ``POST /api/approvals/{id}/close``
(timeout or abandoned), ``POST /api/agents/{agent}/guidance/{id}/claim`` (deliver guidance once).
Proxies and viewers: ``GET /api/agents/state`` (suspensions and guidance to deliver).
Proxies and approvers: ``POST /api/agents/{agent}/suspend`` (a proxy: a tripped runaway breaker).

Viewers and up read: ``GET /api/approvals?status=``, ``GET /api/approvals/{id}``, ``GET /api/agents``.

Approvers and admins (``bastion.operators``):
``POST /api/approvals/{id}/decision`` (``{"decision": "approve"|"deny", "reason"}``),
``POST /api/agents/{agent}/suspend``, ``.../resume`` (``{"reason"}``; resume: humans only),
``.../guidance`` (``{"text"}``).
Suspensions, resumptions and guidance are written to the audit trail as spans of their own.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from starlette.exceptions import HTTPException

from bastion import semconv
from bastion.collector.approvals import CLOSING, STATUSES, Board, Conflict
from bastion.collector.auth import Approver, ApproverOrProxy, Proxy, ProxyOrViewer, Viewer
from bastion.collector.batcher import Batcher
from bastion.collector.responses import COMMON, errors
from bastion.collector.schema import SpanRow
from bastion.operators import Principal, Role

Json = dict[str, Any]
SERVICE_NAME = "bastion-collector"
MAX_WAIT = 30.0
router = APIRouter(responses=errors(*COMMON))


def _board(request: Request) -> Board:
    board: Board = request.app.state.board
    return board


BoardDep = Annotated[Board, Depends(_board)]


def _who(principal: Principal) -> Json:
    return {"id": principal.id, "name": principal.name}


def _text(body: Json, key: str, limit: int = 4000) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise HTTPException(400, f"Body field {key!r} has value {value!r}. Not a string.")
    return value[:limit]


@router.post("/api/approvals", status_code=201)
async def create_approval(board: BoardDep, _: Proxy, body: Annotated[Json, Body()]) -> Json:
    for key in ("agent_id", "rule", "target"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise HTTPException(400, f"Body field {key!r} is required (a non-empty string).")
    return board.view(await board.create(body), clear=False)


@router.get("/api/approvals")
async def list_approvals(
    board: BoardDep, who: Viewer, status: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> Json:
    if status and status not in STATUSES:
        raise HTTPException(400, f"Query parameter 'status' has value {status!r}. Use one of {list(STATUSES)}.")
    clear = who.has(Role.APPROVER)
    return {"items": [board.view(r, clear=clear) for r in board.list(status or None, limit)]}


@router.get("/api/approvals/{approval_id}", responses=errors(404))
async def get_approval(board: BoardDep, who: Viewer, approval_id: str) -> Json:
    record = board.get(approval_id)
    if record is None:
        raise HTTPException(404, f"No approval {approval_id[:32]!r}.")
    return board.view(record, clear=who.has(Role.APPROVER))


@router.get("/api/approvals/{approval_id}/wait", responses=errors(404))
async def wait_approval(
    board: BoardDep, _: Proxy, approval_id: str, timeout: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 20.0
) -> Json:
    try:
        return board.view(await board.wait(approval_id, timeout), clear=False)
    except KeyError:
        raise HTTPException(404, f"No approval {approval_id[:32]!r}.") from None


@router.post("/api/approvals/{approval_id}/close", responses=errors(404))
async def close_approval(board: BoardDep, _: Proxy, approval_id: str, body: Annotated[Json, Body()]) -> Json:
    status = body.get("status")
    if status not in CLOSING:
        raise HTTPException(400, f"Body field 'status' has value {status!r}. Use one of {list(CLOSING)}.")
    try:
        return board.view(await board.close(approval_id, str(status)), clear=False)
    except KeyError:
        raise HTTPException(404, f"No approval {approval_id[:32]!r}.") from None


@router.post("/api/approvals/{approval_id}/decision", responses=errors(404, 409))
async def decide_approval(board: BoardDep, who: Approver, approval_id: str, body: Annotated[Json, Body()]) -> Json:
    decision = body.get("decision")
    if decision not in ("approve", "deny"):
        raise HTTPException(400, f"Body field 'decision' has value {decision!r}. Use 'approve' or 'deny'.")
    try:
        record = await board.decide(approval_id, decision == "approve", _text(body, "reason"), _who(who))
        return board.view(record, clear=False)
    except KeyError:
        raise HTTPException(404, f"No approval {approval_id[:32]!r}.") from None
    except Conflict as e:
        raise HTTPException(409, str(e)) from None


@router.get("/api/agents/state")
async def agents_state(board: BoardDep, _: ProxyOrViewer) -> Json:
    return board.agent_state()


@router.get("/api/agents")
async def agents(board: BoardDep, _: Viewer) -> Json:
    return {"items": sorted(board.agents.values(), key=lambda a: str(a["agent_id"]))}


@router.post("/api/agents/{agent_id}/suspend")
async def suspend(
    request: Request, board: BoardDep, who: ApproverOrProxy, agent_id: str, body: Annotated[Json, Body()]
) -> Json:
    """Approvers suspend agents; so does a proxy whose runaway breaker tripped (limits: suspend_on_trip).
    Only a human resumes them."""
    reason = _text(body, "reason")
    record = await board.suspend(agent_id, True, reason, _who(who))
    await _audit(request, "agent suspended", agent_id, "suspend", who, reason)
    return record


@router.post("/api/agents/{agent_id}/resume")
async def resume(
    request: Request, board: BoardDep, who: Approver, agent_id: str, body: Annotated[Json, Body()]
) -> Json:
    reason = _text(body, "reason")
    record = await board.suspend(agent_id, False, reason, _who(who))
    await _audit(request, "agent resumed", agent_id, "resume", who, reason)
    return record


@router.post("/api/agents/{agent_id}/guidance", status_code=201)
async def guide(request: Request, board: BoardDep, who: Approver, agent_id: str, body: Annotated[Json, Body()]) -> Json:
    text = _text(body, "text", 20_000).strip()
    if not text:
        raise HTTPException(400, "Body field 'text' must not be empty.")
    guidance = await board.guide(agent_id, text, _who(who))
    await _audit(request, "agent guided", agent_id, "guide", who, text)
    return guidance


@router.post("/api/agents/{agent_id}/guidance/{guidance_id}/claim", responses=errors(404, 409))
async def claim(board: BoardDep, _: Proxy, agent_id: str, guidance_id: str) -> Json:
    try:
        return await board.claim(agent_id, guidance_id)
    except KeyError:
        raise HTTPException(404, f"No guidance {guidance_id[:32]!r} for agent {agent_id[:64]!r}.") from None
    except Conflict as e:
        raise HTTPException(409, str(e)) from None


async def _audit(request: Request, name: str, agent_id: str, action: str, who: Principal, text: str) -> None:
    """An intervention, as a span in the audit trail (decision = the intervention)."""
    batcher: Batcher[SpanRow] = request.app.state.collector.batcher
    now = time.time_ns()
    attributes = {
        semconv.BASTION_AGENT_ID: agent_id,
        semconv.BASTION_DECISION: action,
        semconv.BASTION_POLICY_RULE: f"intervention-{action}",
        semconv.BASTION_CALL_KIND: "intervention",
        semconv.BASTION_APPROVAL_APPROVER: who.name,
        semconv.BASTION_APPROVAL_REASON: text[:4000],
    }
    row = SpanRow(
        now, secrets.token_hex(16), secrets.token_hex(8), "", "", name, "Internal", SERVICE_NAME,
        {"service.name": SERVICE_NAME}, "bastion.collector", "", attributes, 0, "Unset", "",
        [], [], [], [], [], [], [],
    )  # fmt: skip
    await batcher.submit([row])
