"""MCP sessions bound to the agent that opened them, with no state shared between proxies.

An MCP server names a session with ``Mcp-Session-Id``, and anyone presenting that id continues it.
Bastion hands the client ``<upstream id>.<tag>`` instead, where the tag is an HMAC, under a proxy
secret, of the agent, the MCP server and the upstream id. Each request carrying a session id must
bear the tag for its own agent; only the upstream id goes on to the server. A replica checks a tag
without knowing the session, so replicas behind a load balancer need only share the secret
(``BASTION_PROXY_TOKEN``). Without one each proxy draws a random secret (its workers share it): a restart then ends
every session, and clients start new ones (an MCP server's 404 for an unknown session means that).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets

TAG_BYTES = 16
# Without a proxy token, the secret `bastion proxy --workers N` draws for its workers (proxy/workers.py).
SECRET_ENV = "BASTION_PROXY_SESSION_SECRET"
_PURPOSE = b"bastion mcp session binding"


class SessionBinder:
    def __init__(self, secret: bytes) -> None:
        # Derived, so the same proxy token can serve other purposes without its MACs meaning anything here.
        self._key = hmac.new(secret, _PURPOSE, hashlib.sha256).digest()

    @classmethod
    def from_token(cls, token: str | None) -> SessionBinder:
        """From the proxy token shared by replicas; else the secret shared by this proxy's workers, or a
        random secret for this process alone."""
        shared = token or os.environ.get(SECRET_ENV)
        return cls(shared.encode() if shared else secrets.token_bytes(32))

    def _tag(self, agent: str, server: str, upstream: str) -> str:
        message = json.dumps([agent, server, upstream]).encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:TAG_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def bind(self, agent: str, server: str, upstream: str) -> str:
        """The session id the client gets for the server's ``upstream`` id."""
        return f"{upstream}.{self._tag(agent, server, upstream)}"

    def unbind(self, agent: str, server: str, presented: str) -> str | None:
        """The server's session id, if ``presented`` was handed to ``agent`` for ``server``; else None."""
        upstream, dot, tag = presented.rpartition(".")
        if not dot or not upstream:
            return None
        expected = self._tag(agent, server, upstream).encode()
        return upstream if hmac.compare_digest(tag.encode("utf-8", "replace"), expected) else None
