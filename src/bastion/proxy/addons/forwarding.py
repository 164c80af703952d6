"""Allowed calls go to the route's upstream, carrying the real provider key.

Only calls with an allowing decision go: mitmproxy logs an addon's exception and carries on with
the flow, so a call whose deciding addon failed arrives here undecided and is refused (fail closed).
"""

from __future__ import annotations

from mitmproxy import http

from bastion.proxy import formats
from bastion.proxy.decision import error
from bastion.proxy.state import answered, refuse, state

UNDECIDED_CODE = "no_decision"


class Forward:
    def request(self, flow: http.HTTPFlow) -> None:
        if answered(flow):
            return
        st = state(flow)
        route = st.route
        if route is None:
            return
        if st.decision is None or not st.decision.allowed:
            message = "Bastion reached no decision on this call (an internal error), so it was not sent."
            refuse(flow, error(UNDECIDED_CODE, message), 500, message, UNDECIDED_CODE)
            return
        upstream = route.upstream
        flow.request.scheme = upstream.scheme
        flow.request.host = upstream.host
        flow.request.port = upstream.port
        flow.request.path = st.upstream_path
        flow.request.headers["host"] = upstream.authority
        if route.api_key_env is None:
            return
        if route.api_key is None:
            message = f"The provider key for route {route.name!r} is not configured (set {route.api_key_env})."
            refuse(flow, error("provider_key_missing", message), 502, message, "provider_key_missing")
            return
        fmt = st.format or formats.for_provider(route.provider)
        name, value = (
            fmt.provider_key(route.api_key.get()) if fmt else ("authorization", f"Bearer {route.api_key.get()}")
        )
        flow.request.headers[name] = value
