"""Each request becomes a Call: agent, provider, model and operation.

A call to a model endpoint whose body was not read (Validate refuses those first; this holds even
if it did not) is refused with 400 rather than taken for a plain HTTP call.
"""

from __future__ import annotations

from mitmproxy import http

from bastion.proxy.classify import classify
from bastion.proxy.decision import error
from bastion.proxy.state import answered, refuse, state

UNREAD_CODE = "invalid_json"


class Classify:
    def request(self, flow: http.HTTPFlow) -> None:
        if answered(flow):
            return
        st = state(flow)
        if st.route is None:
            return
        up = st.route.upstream
        try:
            st.call, st.format = classify(
                st.route.provider, flow.request.method, up.host, st.upstream_path, st.body, up.port
            )
        except ValueError as e:
            message = f"Bastion could not read this model call: {e}."
            refuse(flow, error(UNREAD_CODE, message), 400, message, UNREAD_CODE)
