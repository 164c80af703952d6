"""Who am I, and operators management (admins): ``GET /api/whoami``, ``GET|POST /api/operators``,
``DELETE /api/operators/{id}``. Tokens are shown once, on creation, and stored hashed."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from starlette.exceptions import HTTPException

from bastion.collector.auth import Admin, Anyone
from bastion.collector.responses import COMMON, errors
from bastion.operators import add_operator, list_operators, parse_role, remove_operator

Json = dict[str, Any]
router = APIRouter(responses=errors(*COMMON))


@router.get("/api/whoami")
async def whoami(who: Anyone) -> Json:
    """The principal the request's credential names: what a dashboard may show."""
    return {"id": who.id, "name": who.name, "role": str(who.role)}


@router.get("/api/operators")
async def operators(request: Request, _: Admin) -> Json:
    found = await asyncio.to_thread(list_operators, request.app.state.credentials.path)
    return {"items": [{"id": o.id, "name": o.name, "role": str(o.role)} for o in found]}


@router.post("/api/operators", status_code=201)
async def add(request: Request, who: Admin, body: Annotated[Json, Body()]) -> Json:
    name, role = body.get("name"), body.get("role")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise HTTPException(400, "Body field 'name' is required (a non-empty string of at most 200 characters).")
    try:
        parsed = parse_role(str(role))
    except ValueError as e:
        raise HTTPException(400, str(e)) from None
    token = await asyncio.to_thread(add_operator, request.app.state.credentials.path, name.strip(), parsed)
    return {"name": name.strip(), "role": str(parsed), "token": token, "added_by": who.name}


@router.delete("/api/operators/{operator_id}", responses=errors(404))
async def remove(request: Request, _: Admin, operator_id: str) -> Json:
    removed = await asyncio.to_thread(remove_operator, request.app.state.credentials.path, operator_id)
    if not removed:
        raise HTTPException(404, f"No operator {operator_id[:64]!r}.")
    return {"removed": removed}
