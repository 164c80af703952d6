"""Attacks on the explicit proxy (HTTPS_PROXY): nothing gets around it.

Each test attacks a real stack (`bastion proxy`, `bastion collector`, the demo tool server and a raw
TCP echo server) with plain sockets or httpx, as an agent would. The policy is the bundled one plus
one agent per attack, so each rule below is what that attack tries to stretch.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from factories import processes
from support import collector_api, copy_policies, create_key, free_ports

# Agents beyond the bundled policy's agent-1 (role assistant), each with the rules its attack stretches.
RULES = """
p, web-bot, http:*, *, allow, any-web-call,
p, web-bot, http:127.0.0.1:{tools}/_tool_server/*, GET, allow, local-tool-server-reads,
p, port-bot, http:127.0.0.1:{tools}/*, GET, allow, tool-server-port-only,
p, tcp-bot, tcp:127.0.0.1:{echo}, connect, allow, echo-over-raw-tcp,
p, name-bot, http:localhost:{tools}/_tool_server/*, GET, allow, tool-server-by-name,
p, agent-1, http:127.0.0.1:{collector}/healthz, GET, allow, collector-health,
"""
AGENTS = ("agent-1", "web-bot", "port-bot", "tcp-bot", "name-bot")
NOT_HTTP = b"\x00\x01\x02 binary, not a request line\n"
# A payment of 5000 to a stranger, straight to the tool server: /mcp/tools refuses it (no rule allows it).
SEND_MONEY = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "send_money",
            "arguments": {"amount": 5000, "recipient": "mallory@evil.example"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
).encode()
MCP_HEADERS = {
    "content_type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp_protocol_version": "2026-07-28",
    "mcp_method": "tools/call",
    "mcp_name": "send_money",
}


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@dataclass
class Stack:
    explicit: int
    tools: int
    collector: int
    echo: int
    collector_url: str
    ca: Path
    keys: dict[str, str]

    def proxy_url(self, agent: str) -> str:
        return f"http://{agent}:{self.keys[agent]}@127.0.0.1:{self.explicit}"

    def tool_calls(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"http://127.0.0.1:{self.tools}/_tool_server/calls").json())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("explicit")
    tools, collector_port, reverse, explicit = free_ports(4)
    echo = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    echo.daemon_threads = True
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    policies = tmp / "policies"
    copy_policies(policies)
    with (policies / "policy.csv").open("a") as f:
        f.write(RULES.format(tools=tools, echo=echo.server_address[1], collector=collector_port))
    keys = {
        agent: create_key(policies / "keys.yaml", agent, "assistant" if agent == "agent-1" else "tester")
        for agent in AGENTS
    }
    env = {"BASTION_MCP_TOOLS_URL": f"http://127.0.0.1:{tools}/mcp"}
    flags = ["--collector-url", processes.url(collector_port)]
    try:
        with (
            processes.tool_server(tmp, tools) as tool_server,
            processes.collector(tmp, collector_port) as collector,
            processes.proxy(tmp, "proxy", (reverse, explicit), env, policies, flags) as proxy,
        ):
            processes.ready(tool_server, collector, proxy)
            ca = tmp / "proxy" / "conf" / "mitmproxy-ca-cert.pem"
            yield Stack(explicit, tools, collector_port, echo.server_address[1], collector.url, ca, keys)
    finally:
        echo.shutdown()
        echo.server_close()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def read_answer(sock: socket.socket) -> Answer:
    """One HTTP/1.1 answer from ``sock`` (Content-Length framed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        body += sock.recv(65536)
    return Answer(int(status_line.split()[1]), headers, body)


def tunnel(stack: Stack, target: str, agent: str | None = None, key: str | None = None) -> tuple[Answer, socket.socket]:
    """Send ``CONNECT target``, with ``agent``'s key (or ``key``) as proxy credentials."""
    sock = socket.create_connection(("127.0.0.1", stack.explicit), timeout=10)
    secret = key if key is not None else (stack.keys[agent] if agent else None)
    credentials = base64.b64encode(f"{agent or 'x'}:{secret}".encode()).decode() if secret else None
    auth = f"Proxy-Authorization: Basic {credentials}\r\n" if credentials else ""
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n".encode())
    return read_answer(sock), sock


def first_reply(sock: socket.socket) -> bytes:
    """The first bytes the other end sends on ``sock``; b"" when it closes (or resets) instead."""
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def closed_without_answer(sock: socket.socket) -> bool:
    with sock:
        return first_reply(sock) == b""


def send(sock: socket.socket, method: str, target: str, path: str, body: bytes = b"", **headers: str) -> Answer:
    """One HTTP/1.1 request over ``sock`` (inside a tunnel), and its answer; header names in ``headers``
    are written with dashes."""
    lines = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    head = f"{method} {path} HTTP/1.1\r\nHost: {target}\r\nContent-Length: {len(body)}\r\n{lines}\r\n"
    sock.sendall(head.encode() + body)
    return read_answer(sock)


def get(sock: socket.socket, target: str, path: str) -> Answer:
    return send(sock, "GET", target, path, connection="close")


def code(answer: Answer | httpx.Response) -> str:
    body = answer.body if isinstance(answer, Answer) else answer.content
    return str(json.loads(body)["error"]["code"])


def eventually(
    check: Callable[[], list[dict[str, Any]]], count: int = 1, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """What ``check`` returns once it holds ``count`` items (or what it holds after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while len(found := check()) < count and time.monotonic() < deadline:
        time.sleep(0.3)
    return found


def audit(stack: Stack, **params: str) -> list[dict[str, Any]]:
    with collector_api(stack.collector_url) as api:
        return list(api.get("/api/audit", params={"limit": "500", **params}).json()["items"])


def span_attributes(stack: Stack, trace_id: str) -> dict[str, str]:
    with collector_api(stack.collector_url) as api:
        (span,) = api.get(f"/api/traces/{trace_id}").json()["spans"]
    return dict(span["attributes"])


def test_connect_without_a_valid_key_gets_407(stack: Stack) -> None:
    for key in (None, "bst_not-a-key"):
        answer, sock = tunnel(stack, f"127.0.0.1:{stack.collector}", key=key)
        sock.close()
        assert answer.status == 407
        assert answer.headers["proxy-authenticate"] == 'Basic realm="bastion"'
        assert code(answer) == ("missing_key" if key is None else "unknown_key")


def test_raw_tcp_to_the_collector_is_refused_and_recorded(stack: Stack) -> None:
    # agent-1 may read the collector's /healthz, so its tunnel opens; nothing else passes.
    target = f"127.0.0.1:{stack.collector}"
    answer, sock = tunnel(stack, target, "agent-1")
    assert answer.status == 200
    sock.sendall(NOT_HTTP + b"GET /api/audit HTTP/1.1\r\nHost: x\r\n\r\n")
    assert closed_without_answer(sock)
    # Non-HTTP inside TLS inside the tunnel is raw TCP too (mitmproxy decrypts, then relays).
    _, sock = tunnel(stack, target, "agent-1")
    context = ssl.create_default_context(cafile=str(stack.ca))
    with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        tls.sendall(NOT_HTTP)
        assert closed_without_answer(tls)
    # A plain GET /api/audit in the tunnel is HTTP: decided by policy, which refuses it.
    _, sock = tunnel(stack, target, "agent-1")
    with sock:
        refused = get(sock, target, "/api/audit")
    assert refused.status == 403 and code(refused) == "policy_denied"
    _, sock = tunnel(stack, target, "agent-1")
    with sock:
        assert get(sock, target, "/healthz").status == 200  # what the rule allows still works
    records = eventually(lambda: audit(stack, agent="agent-1", kind="tcp", decision="deny"), count=2)
    assert len(records) >= 2 and {r["rule"] for r in records} == {"default-deny"}


def test_the_tool_server_cannot_be_called_around_mcp_governance(stack: Stack) -> None:
    target = f"127.0.0.1:{stack.tools}"
    answer, sock = tunnel(stack, target, "agent-1")  # no rule of agent-1 reaches the tool server
    sock.close()
    assert answer.status == 403 and code(answer) == "policy_denied"
    # web-bot may call any web API (http:*) and read the tool server's call list, which opens a
    # tunnel; http:* does not name the tool server's loopback address, so the call is refused.
    answer, sock = tunnel(stack, target, "web-bot")
    with sock:
        assert answer.status == 200
        inside = send(sock, "POST", target, "/mcp", SEND_MONEY, **MCP_HEADERS)
    assert inside.status == 403 and code(inside) == "internal_address"
    # The probe's trick: first bytes that do not look like HTTP ("POST" alone) made mitmproxy relay
    # the rest as raw TCP. Now that is raw TCP without a tcp: rule (or, if both writes arrive
    # together, the HTTP call above): refused either way.
    _, sock = tunnel(stack, target, "web-bot")
    with sock:
        sock.sendall(b"POST")
        time.sleep(0.3)  # not an assertion: lets the proxy see the first write alone
        headers = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in MCP_HEADERS.items())
        rest = f" /mcp HTTP/1.1\r\nHost: {target}\r\nContent-Length: {len(SEND_MONEY)}\r\n{headers}\r\n"
        with contextlib.suppress(OSError):  # the proxy may have closed the tunnel already
            sock.sendall(rest.encode() + SEND_MONEY)
        reply = first_reply(sock)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 403")
    headers = {name.replace("_", "-"): value for name, value in MCP_HEADERS.items()}
    for agent in ("agent-1", "web-bot"):  # and as plain HTTP through the proxy
        with httpx.Client(proxy=stack.proxy_url(agent)) as client:
            direct = client.post(f"http://{target}/mcp", content=SEND_MONEY, headers=headers)
        assert direct.status_code == 403
    assert not [c for c in stack.tool_calls() if c.get("name") == "send_money"]


def test_internal_addresses_need_a_rule_that_names_them(stack: Stack) -> None:
    # web-bot's http:* does not name loopback; its rule for 127.0.0.1:<tools>/_tool_server/* does.
    with httpx.Client(proxy=stack.proxy_url("web-bot")) as client:
        by_ip = client.get(f"http://127.0.0.1:{stack.collector}/healthz")
        by_name = client.get(f"http://localhost:{stack.tools}/_tool_server/calls")
        named = client.get(f"http://127.0.0.1:{stack.tools}/_tool_server/calls")
    assert by_ip.status_code == 403 and code(by_ip) == "internal_address"
    assert by_name.status_code == 403 and code(by_name) == "internal_address"
    assert named.status_code == 200
    for target in (f"127.0.0.1:{stack.collector}", f"localhost:{stack.tools}"):
        answer, sock = tunnel(stack, target, "web-bot")
        sock.close()
        assert answer.status == 403 and code(answer) == "internal_address"
    target = f"127.0.0.1:{stack.tools}"
    answer, sock = tunnel(stack, target, "web-bot")
    with sock:
        assert answer.status == 200
        # Inside the tunnel, http:* still does not name the host: only the naming rule's calls pass.
        assert get(sock, target, "/_tool_server/calls").status == 200
    _, sock = tunnel(stack, target, "web-bot")
    with sock:
        refused = get(sock, target, "/mcp")
    assert refused.status == 403 and code(refused) == "internal_address"
    # Bastion's own listening addresses are refused by name (http:* names none of them).
    answer, sock = tunnel(stack, f"127.0.0.1:{stack.explicit}", "web-bot")
    sock.close()
    assert answer.status == 403 and code(answer) == "bastion_address"
    # A rule naming localhost lets localhost through: resolved once, every call inside the tunnel
    # keeps the name (policy decides on it) while connecting to the checked address.
    target = f"localhost:{stack.tools}"
    answer, sock = tunnel(stack, target, "name-bot")
    with sock:
        assert answer.status == 200
        for _ in range(2):  # two calls in one tunnel
            assert send(sock, "GET", target, "/_tool_server/calls").status == 200
        assert send(sock, "GET", target, "/mcp").status == 403  # what the rule does not name
    records = eventually(lambda: audit(stack, agent="name-bot", kind="http"), count=3)
    assert len(records) == 3 and {r["rule"] for r in records} == {"tool-server-by-name", "default-deny"}


def test_an_http_rule_for_one_port_does_not_open_another(stack: Stack) -> None:
    with httpx.Client(proxy=stack.proxy_url("port-bot")) as client:
        assert client.get(f"http://127.0.0.1:{stack.tools}/_tool_server/calls").status_code == 200
        other = client.get(f"http://127.0.0.1:{stack.collector}/healthz")
    assert other.status_code == 403 and "default-deny" in other.text
    answer, sock = tunnel(stack, f"127.0.0.1:{stack.collector}", "port-bot")
    sock.close()
    assert answer.status == 403 and "default-deny" in answer.body.decode()
    answer, sock = tunnel(stack, f"127.0.0.1:{stack.echo}", "port-bot")  # nor raw TCP to another port
    sock.close()
    assert answer.status == 403


def test_raw_tcp_allowed_by_a_tcp_rule_passes_and_is_recorded_with_byte_counts(stack: Stack) -> None:
    answer, sock = tunnel(stack, f"127.0.0.1:{stack.echo}", "tcp-bot")
    assert answer.status == 200
    with sock:
        sock.sendall(NOT_HTTP)
        echoed = b""
        while len(echoed) < len(NOT_HTTP):
            echoed += sock.recv(65536)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(65536) == b""
    assert echoed == NOT_HTTP
    (record,) = eventually(lambda: audit(stack, agent="tcp-bot", kind="tcp"))
    assert (record["decision"], record["rule"]) == ("allow", "echo-over-raw-tcp")
    attrs = span_attributes(stack, record["trace_id"])
    assert attrs["bastion.tcp.bytes.from_client"] == attrs["bastion.tcp.bytes.from_server"] == str(len(NOT_HTTP))
    assert attrs["network.peer.address"] == "127.0.0.1"
    # The CONNECT that opened the tunnel is recorded too, with the rule that opened it.
    (opened,) = eventually(lambda: audit(stack, agent="tcp-bot", kind="connect"))
    assert (opened["decision"], opened["rule"]) == ("allow", "echo-over-raw-tcp")
