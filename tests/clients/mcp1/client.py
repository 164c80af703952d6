"""The official mcp 1.x client through Bastion, for tests/test_mcp_e2e.py: prints what happened as JSON.

    client.py URL KEY CALLS_JSON

CALLS_JSON is a list of {"name", "arguments", "meta"?}. The output holds the session id, the listed
tool names, the log messages the server sent, and per call either its result or the error raised.
"""

from __future__ import annotations

import asyncio
import json
import sys
from importlib.metadata import version
from typing import Any

import httpx
from mcp import ClientSession, McpError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import LoggingMessageNotificationParams, TextContent


async def run(url: str, key: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    logs: list[Any] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    outcomes: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        streamable_http_client(url, http_client=http) as (read, write, session_id),
        ClientSession(read, write, logging_callback=on_log) as session,
    ):
        init = await session.initialize()
        tools = [t.name for t in (await session.list_tools()).tools]
        for c in calls:
            try:
                result = await session.call_tool(c["name"], c.get("arguments"), meta=c.get("meta"))
            except McpError as e:
                outcomes.append({"error": {"code": e.error.code, "message": e.error.message}})
                continue
            text = "".join(b.text for b in result.content if isinstance(b, TextContent))
            outcomes.append({"result": {"text": text, "is_error": result.isError}})
        return {
            "sdk_version": version("mcp"),
            "protocol_version": init.protocolVersion,
            "session_id": session_id(),
            "tools": tools,
            "calls": outcomes,
            "logs": logs,
        }


def main() -> None:
    url, key, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    print(json.dumps(asyncio.run(run(url, key, calls))))


if __name__ == "__main__":
    main()
