"""Who is calling: the agent's Bastion key, and nothing else, names the agent.

Model calls present the key as their API key (``Authorization: Bearer``, ``x-api-key``,
``x-goog-api-key`` or ``?key=``); Bastion removes it and the forwarder puts the provider's key in
its place. Plain HTTP tool calls through ``HTTPS_PROXY`` present it as proxy credentials
(``http://agent:KEY@bastion:8081``), so their own ``Authorization`` header reaches the tool
untouched.
"""

from __future__ import annotations

from mitmproxy import connection, http

from bastion.proxy import formats
from bastion.proxy.credentials import API_KEY_HEADERS, presented_key, proxy_key, query_key
from bastion.proxy.decision import deny
from bastion.proxy.keys import KeyStore
from bastion.proxy.state import answered, refuse, state


class Identify:
    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys
        self._tunnel_keys: dict[str, str] = {}  # client connection id -> key from its CONNECT

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if key := proxy_key(flow.request.headers):
            self._tunnel_keys[flow.client_conn.id] = key

    def client_disconnected(self, client: connection.Client) -> None:
        self._tunnel_keys.pop(client.id, None)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if answered(flow):
            return
        st = state(flow)
        headers = flow.request.headers
        tool_call = st.route is not None and st.route.plain_http
        via_proxy = proxy_key(headers) or self._tunnel_keys.get(flow.client_conn.id)
        key = via_proxy if tool_call else presented_key(headers) or via_proxy
        if st.route is not None and formats.for_provider(st.route.provider) is not None:
            # A model API's key in the query (Gemini's ?key=) never goes upstream either.
            in_query, st.upstream_path = query_key(st.upstream_path)
            key = key or in_query
        # Bastion's credentials and anything identity-looking stop here: upstream never sees them.
        for name in list(headers.keys()):
            lowered = name.lower()
            own_credential = lowered in API_KEY_HEADERS and not tool_call
            if own_credential or lowered == "proxy-authorization" or lowered.startswith("x-bastion-"):
                del headers[name]
        st.identity = self.keys.lookup(key) if key else None
        if st.identity is None:
            rule = "missing_key" if key is None else "unknown_key"
            where = (
                "as proxy credentials (HTTPS_PROXY=http://agent:KEY@host:port)"
                if tool_call
                else ("as the API key (Authorization: Bearer, x-api-key or x-goog-api-key)")
            )
            message = (
                f"No Bastion key was presented: send it {where}."
                if key is None
                else "The Bastion key is unknown or revoked."
            )
            refuse(flow, deny(rule, message), 401, message, rule)
