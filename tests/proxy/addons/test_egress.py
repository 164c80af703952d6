"""The Egress addon with mitmproxy's test flows: CONNECT, raw TCP, address checks and pinning."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import connection, http, tcp
from mitmproxy.proxy import context, layer, layers, server_hooks
from mitmproxy.test import taddons, tflow

from bastion import semconv
from bastion.proxy.addons.egress import Egress
from bastion.proxy.config import GatewayConfig
from bastion.proxy.keys import KeyStore, create_key
from bastion.proxy.policy import PolicyEngine
from bastion.proxy.state import state
from factories.proxy import REGULAR, flow, gateway, policies_dir, route, run_hooks, run_request

RULES = """\
p, role:assistant, http:api.weather.example/*, GET, allow, weather-api-reads,
p, role:assistant, http:127.0.0.1:9200/*, GET, allow, local-tools,
p, role:assistant, http:wiki.corp.exampl?/*, GET, allow, corp-reads,
p, role:assistant, http:nowhere.example/*, GET, allow, nowhere-reads,
p, role:assistant, tcp:db.example:5432, connect, allow, database,
"""
Gateway = tuple[list[object], str, Any]


@pytest.fixture
def gw(tmp_path: Path) -> Gateway:
    routes = (route("openai", hosts=["api.openai.com"], upstream="https://api.openai.com/"),)
    return gateway(tmp_path, routes, rules=RULES)


def credentials(key: str) -> dict[str, str]:
    return {"proxy-authorization": "Basic " + base64.b64encode(f"agent-1:{key}".encode()).decode()}


def connect(addons: list[object], target: str, headers: dict[str, str] | None = None) -> http.HTTPFlow:
    host, _, port = target.rpartition(":")
    f = flow(target, b"", method="CONNECT", host=host, port=int(port), mode=REGULAR, headers=headers)
    return run_hooks(addons, f, ("http_connect",))


def tcp_flow(addons: list[object], opened: http.HTTPFlow, *messages: tuple[bool, bytes]) -> tcp.TCPFlow:
    """Raw TCP inside the tunnel ``opened`` opened: starts, relays ``messages``, ends."""
    f = tflow.ttcpflow(client_conn=opened.client_conn, messages=[])
    f.server_conn.address = (opened.request.host, opened.request.port)
    f.server_conn.timestamp_start = None  # not connected yet (connection_strategy=lazy)
    run_hooks(addons, f, ("tcp_start",))
    for from_client, content in messages:
        f.messages.append(tcp.TCPMessage(from_client, content))
        run_hooks(addons, f, ("tcp_message",))
    return run_hooks(addons, f, ("tcp_end",))


def spans(exporter: Any) -> list[dict[str, Any]]:
    return [dict(s.attributes, name=s.name) for s in exporter.get_finished_spans()]


def error_code(f: http.HTTPFlow) -> tuple[int, str]:
    assert f.response is not None
    return f.response.status_code, f.response.headers["x-bastion-error"]


@pytest.mark.parametrize(("key", "rule"), [(None, "missing_key"), ("bst_unknown", "unknown_key")])
def test_connect_without_a_valid_key_gets_407(gw: Gateway, key: str | None, rule: str) -> None:
    addons, _, exporter = gw
    f = connect(addons, "api.weather.example:443", credentials(key) if key else None)
    assert error_code(f) == (407, rule)
    assert f.response is not None and f.response.headers["proxy-authenticate"] == 'Basic realm="bastion"'
    (span,) = spans(exporter)
    assert (span["name"], span[semconv.BASTION_CALL_KIND]) == ("CONNECT api.weather.example:443", "connect")
    assert (span[semconv.BASTION_DECISION], span[semconv.BASTION_POLICY_RULE]) == ("deny", rule)
    assert span[semconv.HTTP_RESPONSE_STATUS_CODE] == 407


@pytest.mark.parametrize(
    ("target", "status", "rule"),
    [
        ("api.weather.example:443", None, "weather-api-reads"),
        ("api.openai.com:443", None, "route:openai"),  # a route's host: its calls go to the route
        ("api.openai.com:8443", None, "route:openai"),
        ("127.0.0.1:9200", None, "local-tools"),  # internal, but named by the rule
        ("db.example:5432", None, "database"),
        ("api.weather.example:8443", (403, "policy_denied"), "default-deny"),  # another port
        ("evil.example:443", (403, "policy_denied"), "default-deny"),
        ("127.0.0.1:9300", (403, "policy_denied"), "default-deny"),
        ("wiki.corp.example:443", (403, "internal_address"), "internal-address"),  # a wildcard names no host
        ("nowhere.example:443", (502, "unresolvable_host"), "unresolvable-host"),
    ],
)
def test_connect_is_decided_on_its_target(gw: Gateway, target: str, status: tuple[int, str] | None, rule: str) -> None:
    addons, key, exporter = gw
    f = connect(addons, target, credentials(key))
    assert (error_code(f) if f.response else None) == status
    (span,) = spans(exporter)
    assert span[semconv.BASTION_POLICY_RULE] == rule
    assert span[semconv.BASTION_DECISION] == ("allow" if status is None else "deny" if status[0] == 403 else "error")


def test_connections_go_to_the_checked_address_and_nowhere_unchecked(tmp_path: Path) -> None:
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])  # a rebinding name: public once, then loopback

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    key, _ = create_key(tmp_path / "keys.yaml", "agent-1", "assistant")
    keys = KeyStore(tmp_path / "keys.yaml")
    upstream = route("openai", upstream="https://model.internal:9100/")
    config = GatewayConfig(routes=(upstream,), keys_file=tmp_path / "keys.yaml")
    egress = Egress(config, keys, PolicyEngine(policies_dir(tmp_path, RULES)), rebinding)
    f = flow("api.weather.example:443", b"", method="CONNECT", host="api.weather.example", port=443, mode=REGULAR)
    f.request.headers.update(credentials(key))
    asyncio.run(egress.http_connect(f))
    assert f.response is None

    def connecting(host: str, port: int, client: connection.Client = f.client_conn) -> connection.Server:
        server = tflow.tserver_conn()
        server.address = (host, port)
        egress.server_connect(server_hooks.ServerConnectionHookData(server=server, client=client))
        return server

    pinned = connecting("api.weather.example", 443)
    assert pinned.address == ("93.184.215.14", 443) and pinned.error is None  # no second lookup
    egress.server_connected(server_hooks.ServerConnectionHookData(server=pinned, client=f.client_conn))
    assert pinned.address == ("api.weather.example", 443)  # calls inside still see the name
    assert connecting("evil.example", 443).error is not None  # never checked for this client
    assert connecting("api.weather.example", 443, tflow.tclient_conn()).error is not None  # another client
    assert connecting("model.internal", 9100).error is None  # a configured upstream


def test_plain_http_to_an_internal_address_needs_a_rule_that_names_it(gw: Gateway) -> None:
    addons, key, _ = gw

    def get(host: str, port: int) -> http.HTTPFlow:
        return run_request(
            addons, flow("/v1/x", b"", method="GET", host=host, port=port, mode=REGULAR, headers=credentials(key))
        )

    named = get("127.0.0.1", 9200)
    assert named.response is None and state(named).attributes[semconv.NETWORK_PEER_ADDRESS] == "127.0.0.1"
    assert error_code(get("wiki.corp.example", 80)) == (403, "internal_address")
    assert state(get("api.weather.example", 443)).attributes[semconv.NETWORK_PEER_ADDRESS] == "93.184.215.14"


def test_raw_tcp_needs_a_tcp_rule(gw: Gateway) -> None:
    addons, key, exporter = gw
    opened = connect(addons, "api.weather.example:443", credentials(key))  # open for HTTP calls only
    refused = tcp_flow(addons, opened, (True, b"\x00\x01 not http"))
    assert refused.error is not None and refused.server_conn.error is not None  # mitmproxy will not connect
    assert refused.messages[-1].content == b""  # nothing relayed
    span = spans(exporter)[-1]
    assert (span["name"], span[semconv.BASTION_CALL_KIND]) == ("tcp api.weather.example:443", "tcp")
    assert (span[semconv.BASTION_DECISION], span[semconv.BASTION_POLICY_RULE]) == ("deny", "default-deny")
    assert span[semconv.ERROR_TYPE] == "tcp_refused"


def test_raw_tcp_allowed_by_a_tcp_rule_is_relayed_and_counted(gw: Gateway) -> None:
    addons, key, exporter = gw
    opened = connect(addons, "db.example:5432", credentials(key))
    relayed = tcp_flow(addons, opened, (True, b"\x00\x01query"), (False, b"rows"), (True, b"x"))
    assert relayed.error is None and relayed.server_conn.error is None
    assert len(relayed.messages) == 1  # counted, not kept
    span = spans(exporter)[-1]
    assert (span[semconv.BASTION_DECISION], span[semconv.BASTION_POLICY_RULE]) == ("allow", "database")
    assert span[semconv.BASTION_TCP_BYTES_FROM_CLIENT] == 8 and span[semconv.BASTION_TCP_BYTES_FROM_SERVER] == 4
    assert span[semconv.NETWORK_PEER_ADDRESS] == "93.184.215.16"
    assert (span[semconv.SERVER_ADDRESS], span[semconv.SERVER_PORT]) == ("db.example", 5432)


def test_raw_tcp_outside_a_tunnel_is_refused(gw: Gateway) -> None:
    addons, _, _ = gw
    f = tflow.ttcpflow(messages=[])
    run_hooks(addons, f, ("tcp_start",))
    assert state(f).decision is not None and state(f).decision.rule == "tcp-outside-tunnel"  # type: ignore[union-attr]


def test_dns_inside_a_tunnel_is_raw_tcp(gw: Gateway) -> None:
    addons, _, _ = gw
    egress = next(a for a in addons if isinstance(a, Egress))
    client = tflow.tclient_conn()
    client.proxy_mode = REGULAR
    with taddons.context():
        ctx = context.Context(client, None)  # type: ignore[arg-type]
        ctx.server = tflow.tserver_conn()
        nextlayer = layer.NextLayer(ctx)
        nextlayer.layer = layers.DNSLayer(ctx)
        egress.next_layer(nextlayer)
    assert isinstance(nextlayer.layer, layers.TCPLayer)
