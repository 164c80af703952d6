"""MCP sessions as the official clients run them: mcp 2.x in this process, mcp 1.x from its own uv project.

Each returns the tool names it listed and, per call, its result text or the JSON-RPC error raised.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import TextContent

from support import ROOT

MCP1_PYTHON = ROOT / "tests" / "clients" / "mcp1" / ".venv" / "bin" / "python"
MCP1_CLIENT = ROOT / "tests" / "clients" / "mcp1" / "client.py"


async def mcp2_session(url: str, key: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    outcomes: list[dict[str, Any]] = []
    async with (
        httpx2.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        tools = [t.name for t in (await client.list_tools()).tools]
        for c in calls:
            try:
                result = await client.call_tool(c["name"], c["arguments"], meta=c.get("meta"))
            except MCPError as e:
                outcomes.append({"error": {"code": e.error.code, "message": e.error.message}})
                continue
            text = "".join(b.text for b in result.content if isinstance(b, TextContent))
            outcomes.append({"result": {"text": text, "is_error": result.is_error}})
    return {"tools": tools, "calls": outcomes}


def mcp1_session(url: str, key: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Also holds the session id, the protocol version and the log notifications the client saw."""
    if not MCP1_PYTHON.exists():
        pytest.fail(f"{MCP1_PYTHON} is missing: run `make install` (uv sync --frozen --project tests/clients/mcp1)")
    done = subprocess.run(
        [str(MCP1_PYTHON), str(MCP1_CLIENT), url, key, json.dumps(calls)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))
