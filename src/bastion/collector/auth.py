"""Every collector route but ``/healthz`` needs a bearer credential with a role (``bastion.operators``).

``Depends(requires(Role.VIEWER))`` admits viewers, approvers and admins; ``requires(Role.PROXY)`` only
the proxies' service credential. No credential is a 401; a valid one without the role, or an agent
key, is a 403. Agent keys may only export their own spans to ``/v1/traces`` (``otlp_sender``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.exceptions import HTTPException

from bastion.operators import Credentials, Principal, Role
from bastion.proxy.keys import KeyStore

AGENT_KEY_PREFIX = "bst_"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="bastion"'}


def bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _credentials(request: Request) -> Credentials:
    credentials: Credentials = request.app.state.credentials
    return credentials


def authenticate(request: Request) -> Principal:
    """The principal presenting the request's bearer token; 401 when there is none or it is unknown."""
    token = bearer(request)
    if not token:
        raise HTTPException(401, "A credential is required (Authorization: Bearer <token>).", _CHALLENGE)
    try:
        found = _credentials(request).verify(token)
    except ValueError as e:  # a broken operators file: nobody gets in, and the log says why
        raise HTTPException(503, f"The collector cannot read its operators: {e}") from None
    if found is None:
        if token.startswith(AGENT_KEY_PREFIX):
            raise HTTPException(403, "Agent keys have no access to the collector API.")
        raise HTTPException(401, "The credential is unknown or was removed.", _CHALLENGE)
    return found


def requires(*roles: Role) -> Callable[[Request], Principal]:
    """A dependency admitting principals that hold one of ``roles``."""
    needed = " or ".join(roles)

    def check(request: Request) -> Principal:
        who = authenticate(request)
        if not any(who.has(role) for role in roles):
            raise HTTPException(403, f"This needs the {needed} role; {who.name!r} has {who.role}.")
        return who

    check.__name__ = "requires_" + "_or_".join(roles)
    return check


Anyone = Annotated[Principal, Depends(authenticate)]
Viewer = Annotated[Principal, Depends(requires(Role.VIEWER))]
Approver = Annotated[Principal, Depends(requires(Role.APPROVER))]
Admin = Annotated[Principal, Depends(requires(Role.ADMIN))]
Proxy = Annotated[Principal, Depends(requires(Role.PROXY))]
# A proxy suspends an agent whose runaway breaker tripped (limits: suspend_on_trip).
ApproverOrProxy = Annotated[Principal, Depends(requires(Role.APPROVER, Role.PROXY))]
# Agent state is what proxies enforce and what operators look at.
ProxyOrViewer = Annotated[Principal, Depends(requires(Role.PROXY, Role.VIEWER))]


def otlp_sender(request: Request) -> Principal | str:
    """Who may export spans: the proxy (Bastion's own spans), or an agent by its key (the agent's id:
    its spans are stored as agent-supplied). Operators may not write spans."""
    token = bearer(request)
    keys: KeyStore | None = request.app.state.agent_keys
    if token.startswith(AGENT_KEY_PREFIX) and keys is not None:
        identity = keys.lookup(token)
        if identity is None:
            raise HTTPException(401, "The agent key is unknown or revoked.", _CHALLENGE)
        return identity.agent_id
    who = authenticate(request)
    if who.role is not Role.PROXY:
        raise HTTPException(403, f"Only proxies and agents export spans; {who.name!r} is an operator ({who.role}).")
    return who


OtlpSender = Annotated[Principal | str, Depends(otlp_sender)]
