"""The Bastion key a request presents: as its API key, or as proxy credentials.

Model calls present the key as their API key (``Authorization: Bearer``, ``x-api-key``, Gemini's
``x-goog-api-key`` or its ``?key=`` query parameter). Traffic
through ``HTTPS_PROXY`` presents it as proxy credentials (``http://agent:KEY@bastion:8081``, which
clients send as ``Proxy-Authorization: Basic``, or ``Proxy-Authorization: Bearer KEY``), on a
``CONNECT`` and on plain HTTP requests alike.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_plus

from mitmproxy import http

# The headers model APIs' clients send their API key in; none of them reaches upstream.
API_KEY_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")


def presented_key(headers: http.Headers) -> str | None:
    auth: str = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key: str | None = headers.get("x-api-key") or headers.get("x-goog-api-key")
    return api_key or None


QUERY_KEY = "key"  # Gemini's API key as a query parameter (``?key=...``)


def query_key(path: str) -> tuple[str | None, str]:
    """The key a path's query carries as ``key=``, and the path without it (other parameters kept as sent)."""
    base, mark, query = path.partition("?")
    if not mark:
        return None, path
    found, kept = None, []
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == QUERY_KEY:
            found = found or unquote_plus(value) or None
        else:
            kept.append(pair)
    return found, base + ("?" + "&".join(kept) if kept else "")


def proxy_key(headers: http.Headers) -> str | None:
    """The key in ``Proxy-Authorization``: Bearer, or Basic with the key as password (or user)."""
    value: str = headers.get("proxy-authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer":
        return token.strip() or None
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(token.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user or None
    return None
