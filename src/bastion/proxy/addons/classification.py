"""Each request becomes a Call: agent, provider, model and operation."""

from __future__ import annotations

from mitmproxy import http

from bastion.proxy.classify import classify
from bastion.proxy.state import answered, state


class Classify:
    def request(self, flow: http.HTTPFlow) -> None:
        if answered(flow):
            return
        st = state(flow)
        if st.route is None:
            return
        up = st.route.upstream
        st.call = classify(st.route.provider, flow.request.method, up.host, st.upstream_path, st.body, up.port)
