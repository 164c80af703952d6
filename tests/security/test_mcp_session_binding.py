"""Attack: one agent continues another agent's MCP session.

An MCP server knows its sessions only by ``Mcp-Session-Id``; the proxy passed any id through, so
agent B, holding agent A's session id (from a log, a shared trace, a neighbour process), could call
tools inside A's session. Bastion now hands out session ids bound to the agent that opened them and
refuses any other agent presenting one with 404 (a JSON-RPC error, as for an unknown session): the
call never reaches the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.proxy import mcp
from factories import processes
from support import create_key, free_ports

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
WEATHER = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/call",
    "params": {"name": "get_weather", "arguments": {"city": "Paris"}},
}


@dataclass
class Stack:
    url: str
    tools: str
    keys: dict[str, str]

    def post(self, agent: str, body: dict[str, Any], session: str | None) -> httpx.Response:
        headers = {**HEADERS, "authorization": f"Bearer {self.keys[agent]}", "mcp-protocol-version": "2025-06-18"}
        if session is not None:
            headers["mcp-session-id"] = session
        return httpx.post(self.url, json=body, headers=headers, timeout=30)

    def calls(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.tools}/_tool_server/calls").json())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("mcp-sessions")
    keys = {agent: create_key(tmp / "keys.yaml", agent) for agent in ("agent-a", "agent-b")}
    tools_port, collector_port, *proxy_ports = free_ports(4)
    env = {"BASTION_MCP_TOOLS_URL": f"{processes.url(tools_port)}/mcp", "BASTION_KEYS_FILE": str(tmp / "keys.yaml")}
    env["BASTION_COLLECTOR_URL"] = processes.url(collector_port)
    with (
        processes.tool_server(tmp, tools_port) as tools,
        processes.proxy(tmp, "proxy", proxy_ports, env) as proxy,
    ):
        processes.ready(tools, proxy)
        yield Stack(f"{proxy.url}/mcp/tools", tools.url, keys)


def open_session(stack: Stack, agent: str) -> str:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize"}
    init["params"] = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    opened = stack.post(agent, init, None)
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    assert stack.post(agent, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session).status_code == 202
    return str(session)


def test_another_agent_replaying_a_session_id_is_refused(stack: Stack) -> None:
    session = open_session(stack, "agent-a")
    stolen = stack.post("agent-b", WEATHER, session)
    assert stolen.status_code == 404, stolen.text
    error = stolen.json()["error"]
    assert error["code"] == mcp.INVALID_REQUEST and error["data"]["code"] == "unknown_mcp_session"
    assert stack.calls() == []  # the server never saw agent B's call
    assert stack.post("agent-a", WEATHER, session).status_code == 200  # the session goes on for agent A
    assert [c["name"] for c in stack.calls()] == ["get_weather"]
