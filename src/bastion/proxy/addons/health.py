"""``GET /healthz`` on the reverse-proxy port, for load balancers and `bastion up`."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ReverseMode

from bastion.proxy.state import INTERNAL

HEALTH_PATH = "/healthz"


class Health:
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if (
            isinstance(flow.client_conn.proxy_mode, ReverseMode)
            and flow.request.method == "GET"
            and flow.request.path == HEALTH_PATH
        ):
            flow.metadata[INTERNAL] = True  # not an agent's call: no span, no audit record
            flow.response = http.Response.make(200, b'{"status":"ok"}', {"content-type": "application/json"})
