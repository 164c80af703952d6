"""Who is calling: the agent's Bastion key, and nothing else, names the agent."""

from __future__ import annotations

from mitmproxy import http

from bastion.proxy.decision import deny
from bastion.proxy.errors import error_response
from bastion.proxy.keys import KeyStore
from bastion.proxy.state import answered, state

CREDENTIAL_HEADERS = ("authorization", "x-api-key", "proxy-authorization")


def presented_key(headers: http.Headers) -> str | None:
    auth: str = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key: str | None = headers.get("x-api-key")
    return api_key or None


class Identify:
    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if answered(flow):
            return
        st = state(flow)
        headers = flow.request.headers
        key = presented_key(headers)
        # The key and any identity-looking header stop here: upstream never sees them.
        for name in list(headers.keys()):
            if name.lower() in CREDENTIAL_HEADERS or name.lower().startswith("x-bastion-"):
                del headers[name]
        st.identity = self.keys.lookup(key) if key else None
        if st.identity is None:
            rule = "missing_key" if key is None else "unknown_key"
            message = (
                "No Bastion key was presented: send it as the API key (Authorization: Bearer or x-api-key)."
                if key is None
                else "The Bastion key is unknown or revoked."
            )
            st.decision = deny(rule, message)
            provider = st.route.provider if st.route else "http"
            flow.response = error_response(provider, 401, message, rule)
