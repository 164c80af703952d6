"""Nothing gets around the explicit proxy: tunnels, raw TCP and the addresses Bastion connects to.

* ``CONNECT`` needs the agent's key as proxy credentials (407 otherwise) and opens a tunnel only
  to a host a route claims or that one of the agent's allow or review rules could reach (403
  naming the rule otherwise). Every HTTP call inside is then decided as usual.
* What is not HTTP inside a tunnel (mitmproxy's TCP layer, also after TLS, and DNS, which
  mitmproxy would otherwise answer itself) is raw TCP: refused unless a ``tcp:<host>:<port>`` rule
  allows ``connect``; allowed relays count their bytes.
* Internal and Bastion's own addresses are refused unless the deciding rule names the host
  itself. A name is resolved once (asyncio's resolver, off the event loop) and every connection
  for the call goes to the checked address, so a DNS rebind cannot swap it. Upstreams the
  operator configured (routes, MCP servers) are trusted; any other connection without a check is
  refused (``server_connect``), so nothing new can slip past.

The plain logic lives in ``proxy/egress.py``; Tracing records each CONNECT and TCP decision.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from dataclasses import replace

from mitmproxy import connection, ctx, http, tcp
from mitmproxy.proxy import layer, layers, server_hooks
from mitmproxy.proxy.mode_specs import RegularMode

from bastion import semconv
from bastion.proxy.config import GatewayConfig, LiveConfig, live
from bastion.proxy.credentials import proxy_key
from bastion.proxy.decision import Decision, Effect, PolicyRequest, allow, deny
from bastion.proxy.egress import (
    INTERNAL_ADDRESS_RULE,
    OUTSIDE_TUNNEL_RULE,
    OWN_ADDRESS_RULE,
    TCP_ACTION,
    UNRESOLVABLE_RULE,
    IPAddress,
    Pin,
    Resolver,
    Tunnel,
    address_refusal,
    http_prefix,
    ip,
    names_host,
    tcp_object,
)
from bastion.proxy.keys import KeyStore
from bastion.proxy.policy import NO_MATCH_RULE, PolicyEngine
from bastion.proxy.state import CallState, answered, refuse, state

log = logging.getLogger(__name__)
REALM = 'Basic realm="bastion"'
# Error codes in refusals' bodies, by rule; any other rule is a policy denial.
_CODES = {
    UNRESOLVABLE_RULE: "unresolvable_host",
    INTERNAL_ADDRESS_RULE: "internal_address",
    OWN_ADDRESS_RULE: "bastion_address",
}


async def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (an IP address is itself), in the resolver's order."""
    if ip(host) is not None:
        return [host]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class Egress:
    def __init__(
        self,
        config: GatewayConfig | LiveConfig,
        keys: KeyStore,
        engine: PolicyEngine,
        resolver: Resolver | None = None,
    ) -> None:
        self.live = live(config)
        self.keys = keys
        self.engine = engine
        self.resolve = resolver or resolve
        # Bastion's own listening addresses, learnt when the proxy runs.
        self.own: frozenset[tuple[IPAddress, int]] = frozenset()
        self._tunnels: dict[str, Tunnel] = {}  # client connection id -> its tunnel
        self._pins: dict[str, dict[tuple[str, int], Pin]] = {}  # client id -> (host, port) -> checked address
        self._asked: dict[str, tuple[str, int]] = {}  # server connection id -> (host, port) while it connects
        self._upstreams: tuple[GatewayConfig, frozenset[tuple[str, int]]] | None = None

    @property
    def config(self) -> GatewayConfig:
        return self.live.current

    @property
    def _configured(self) -> frozenset[tuple[str, int]]:
        """The upstreams of the configuration in force (routes and MCP servers)."""
        config = self.config
        if self._upstreams is None or self._upstreams[0] is not config:
            routes = [*config.routes, *(s.route for s in config.mcp_servers)]
            self._upstreams = (config, frozenset((r.upstream.host, r.upstream.port) for r in routes))
        return self._upstreams[1]

    async def running(self) -> None:
        proxyserver = ctx.master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
        listening: Sequence[tuple[str, int]] = proxyserver.listen_addrs() if proxyserver is not None else []
        own: set[tuple[IPAddress, int]] = set()
        for host, port, *_ in listening:
            hosts = [host]
            if (address := ip(host)) is not None and address.is_unspecified:  # every local address
                hosts += await resolve(socket.gethostname(), port)
            own.update((a, port) for h in hosts if (a := ip(h)) is not None)
        self.own = frozenset(own)

    # -- CONNECT -------------------------------------------------------------------------------

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        if answered(flow):
            return
        st = state(flow)
        host, port = flow.request.host, flow.request.port
        key = proxy_key(flow.request.headers)
        st.identity = identity = self.keys.lookup(key) if key else None
        if identity is None:
            rule = "missing_key" if key is None else "unknown_key"
            message = (
                "CONNECT needs the agent's Bastion key as proxy credentials (HTTPS_PROXY=http://agent:KEY@host:port)."
                if key is None
                else "The Bastion key in Proxy-Authorization is unknown or revoked."
            )
            refuse(flow, deny(rule, message), 407, message, rule, "http")
            assert flow.response is not None
            flow.response.headers["proxy-authenticate"] = REALM
            return
        route = self.config.route_for_host(host)
        if route is not None:
            reason = f"route {route.name!r} serves {host}; each call inside the tunnel is decided"
            st.decision = allow(f"route:{route.name}", reason)
            self._tunnels[flow.client_conn.id] = Tunnel(identity, host, port)  # its calls go to the route
            return
        version = self.engine.version
        found = self.engine.reach(
            identity.agent_id,
            identity.role,
            [http_prefix(host, port)],
            [tcp_object(host, port)],
            names=lambda pattern: names_host(pattern, host),
        )
        if found is None:
            reason = f"no rule allows agent {identity.agent_id} any call to {host}:{port}, so '{NO_MATCH_RULE}' applies"
            self._refuse(flow, Decision(Effect.DENY, NO_MATCH_RULE, reason, version), f"CONNECT {host}:{port}")
            return
        refusal, pin = await self._check(flow.client_conn.id, host, port, found.named is not None)
        if refusal is not None:
            self._refuse(flow, replace(refusal, policy_version=version), f"CONNECT {host}:{port}")
            return
        assert pin is not None
        rule = found.named or found.rule
        reason = f"rule '{rule}' could allow calls to {host}:{port}; each call inside the tunnel is decided"
        st.decision = allow(rule, reason, version)
        st.attributes[semconv.NETWORK_PEER_ADDRESS] = pin.address
        self._tunnels[flow.client_conn.id] = Tunnel(identity, host, port)

    # -- plain HTTP through the explicit proxy, to hosts no route claims -------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if answered(flow) or st.decision is None or st.route is None or st.identity is None:
            return
        if not isinstance(flow.client_conn.proxy_mode, RegularMode) or self.config.route_for_host(flow.request.host):
            return  # reverse-proxy routes and routes' hosts go to configured upstreams
        host, port = flow.request.host, flow.request.port  # inside a tunnel: the tunnel's target
        call = st.call
        obj, act = (call.policy_object, call.policy_action) if call is not None else ("", "")
        refusal, pin = await self._check(flow.client_conn.id, host, port, self._named(st, obj, act, host))
        if refusal is not None:
            st.hold = None
            self._refuse(flow, replace(refusal, policy_version=st.decision.policy_version), "the call")
        elif pin is not None:
            st.attributes[semconv.NETWORK_PEER_ADDRESS] = pin.address

    # -- raw TCP inside a tunnel ---------------------------------------------------------------

    async def tcp_start(self, flow: tcp.TCPFlow) -> None:
        st = state(flow)
        st.attributes.update({semconv.BASTION_TCP_BYTES_FROM_CLIENT: 0, semconv.BASTION_TCP_BYTES_FROM_SERVER: 0})
        tunnel = self._tunnels.get(flow.client_conn.id)
        if tunnel is None:
            st.decision = deny(OUTSIDE_TUNNEL_RULE, "raw TCP is decided only inside a CONNECT tunnel")
        else:
            st.identity = identity = tunnel.identity
            obj = tcp_object(tunnel.host, tunnel.port)
            decision = self.engine.decide(PolicyRequest(identity.agent_id, identity.role, obj, TCP_ACTION))
            if decision.allowed:  # and the address: checked now if a route claimed the tunnel's host
                named = self._named(st, obj, TCP_ACTION, tunnel.host)
                refusal, pin = await self._check(flow.client_conn.id, tunnel.host, tunnel.port, named)
                if refusal is not None:
                    decision = replace(refusal, policy_version=decision.policy_version)
                elif pin is not None:
                    st.attributes[semconv.NETWORK_PEER_ADDRESS] = pin.address
            st.decision = decision
        if not st.decision.allowed:
            if flow.killable:
                flow.kill()  # type: ignore[no-untyped-call]
            if flow.server_conn.timestamp_start is None:  # never opened: mitmproxy will not open it
                flow.server_conn.error = f"Bastion refused raw TCP ({st.decision.rule}): {st.decision.reason}"

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        st = state(flow)
        message = flow.messages[-1]
        if st.decision is None or not st.decision.allowed:
            message.content = b""  # a refused relay passes nothing, even if a connection exists
        else:
            client = message.from_client
            key = semconv.BASTION_TCP_BYTES_FROM_CLIENT if client else semconv.BASTION_TCP_BYTES_FROM_SERVER
            st.attributes[key] = int(st.attributes.get(key, 0)) + len(message.content)
        del flow.messages[:-1]  # counted: a long relay must not keep every byte in memory

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        # mitmproxy answers DNS to port 53 itself; inside a tunnel that is raw TCP like any other.
        client = nextlayer.context.client
        if isinstance(nextlayer.layer, layers.DNSLayer) and isinstance(client.proxy_mode, RegularMode):
            nextlayer.layer = layers.TCPLayer(nextlayer.context)

    # -- every connection goes to a checked address or a configured upstream ---------------------

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        server = data.server
        if server.error or server.address is None:
            return
        host, port = str(server.address[0]), int(server.address[1])
        pin = self._pins.get(data.client.id, {}).get((host, port))
        if pin is not None:
            if pin.address != host:
                self._asked[server.id] = (host, port)
                server.address = (pin.address, port)
            return
        if (host, port) not in self._configured:
            server.error = f"Bastion: no decision checked a connection to {host}:{port}"

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        # Requests inside a tunnel take their host from the connection: give it back its name.
        if (asked := self._asked.pop(data.server.id, None)) is not None:
            data.server.address = asked

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        self.server_connected(data)

    def client_disconnected(self, client: connection.Client) -> None:
        self._tunnels.pop(client.id, None)
        self._pins.pop(client.id, None)

    # -- helpers ---------------------------------------------------------------------------------

    async def _check(self, client_id: str, host: str, port: int, named: bool) -> tuple[Decision | None, Pin | None]:
        """Where this client's connections to ``host:port`` go: the pin it already has, or ``host``
        resolved once, every address checked and the first one pinned. Returns (refusal, pin): an
        internal address is refused unless ``named`` (a rule naming the host allows the call)."""
        pins = self._pins.setdefault(client_id, {})
        pin = pins.get((host, port))
        if pin is None:
            addresses = await self.resolve(host, port)
            refusal = address_refusal(host, port, addresses, self.own)
            if refusal is not None and (refusal.rule == UNRESOLVABLE_RULE or not named):
                return refusal, None
            pin = pins[(host, port)] = Pin(addresses[0], internal=refusal is not None)
        if pin.internal and not named:
            return self._not_named(host, port), None
        return None, pin

    def _named(self, st: CallState, obj: str, act: str, host: str) -> bool:
        """Does an allow or review rule that names ``host`` itself match this call (conditions set
        aside: HTTP and TCP calls carry no arguments)?"""
        if st.identity is None or not obj:
            return False
        agent, role = st.identity.agent_id, st.identity.role
        found = self.engine.reach(agent, role, (), [obj], names=lambda pattern: names_host(pattern, host), act=act)
        return found is not None and found.named is not None

    def _not_named(self, host: str, port: int) -> Decision:
        reason = (
            f"{host} is an internal address, and no rule that names it allows this call: Bastion "
            f"connects there only for rules that name {host} itself (e.g. {http_prefix(host, port)}*)"
        )
        return deny(INTERNAL_ADDRESS_RULE, reason)

    def _refuse(self, flow: http.HTTPFlow, decision: Decision, what: str) -> None:
        status = 502 if decision.rule == UNRESOLVABLE_RULE else 403
        version = f" (policy version {decision.policy_version})" if decision.policy_version else ""
        message = f"Bastion refused {what}: {decision.reason}{version}."
        refuse(flow, decision, status, message, _CODES.get(decision.rule, "policy_denied"))
