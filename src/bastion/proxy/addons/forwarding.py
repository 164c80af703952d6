"""Allowed calls go to the route's upstream, carrying the real provider key.

Only calls with an allowing decision go: mitmproxy logs an addon's exception and carries on with
the flow, so a call whose deciding addon failed arrives here undecided and is refused (fail closed).
"""

from __future__ import annotations

from mitmproxy import http

from bastion.proxy import formats
from bastion.proxy.decision import refuse
from bastion.proxy.errors import error_response
from bastion.proxy.state import answered, state

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
            st.decision = refuse(UNDECIDED_CODE, message)
            flow.response = error_response(st.format or route.provider, 500, message, UNDECIDED_CODE)
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
            st.decision = refuse("provider_key_missing", message)
            flow.response = error_response(st.format or route.provider, 502, message, "provider_key_missing")
            return
        fmt = st.format or formats.for_provider(route.provider)
        name, value = (
            fmt.provider_key(route.api_key.get()) if fmt else ("authorization", f"Bearer {route.api_key.get()}")
        )
        flow.request.headers[name] = value
