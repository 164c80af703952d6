"""A reference agent: the official openai SDK making ordinary calls through Bastion.

    python -m bastion.agents.reference_agent --base-url http://127.0.0.1:8080/openai/v1 --api-key KEY

The key can come from ``BASTION_AGENT_KEY`` and the base URL from ``BASTION_AGENT_BASE_URL``; the
key is never printed. The agent runs these steps in order, printing one line for each:

1. ``chat``: a chat completion with ``scripted-small``;
2. ``stream``: a streamed chat completion, printed chunk by chunk as it arrives;
3. ``tools``: offers a ``get_weather`` tool, runs the call the model asks for locally and sends the
   result back for the final answer;
4. ``embeddings``: embeddings with ``scripted-embed``;
5. ``denied``: a call to ``scripted-large``, which Bastion's bundled policy denies; the agent
   expects ``openai.PermissionDeniedError`` and prints its message (naming the policy rule).

``--steps chat,tools`` runs a subset. The exit status is 0 when every step behaved as expected
(including the expected deny), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import openai
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from bastion.settings import Secret, add_option

SMALL_MODEL = "scripted-small"
EMBED_MODEL = "scripted-embed"
DENIED_MODEL = "scripted-large"
WEATHER_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class StepFailed(Exception):
    """A step got an answer, but not the one expected."""


def get_weather(city: str) -> str:
    """The agent's local tool."""
    return f"Sunny and 21 C in {city}"


def chat(client: openai.OpenAI, out: TextIO) -> str:
    r = client.chat.completions.create(
        model=SMALL_MODEL, messages=[{"role": "user", "content": "Say hello to Bastion."}]
    )
    text = r.choices[0].message.content
    if not text:
        raise StepFailed("empty answer")
    return f"{r.model} answered {text!r}"


def stream(client: openai.OpenAI, out: TextIO) -> str:
    chunks = client.chat.completions.create(
        model=SMALL_MODEL,
        messages=[{"role": "user", "content": "Stream a few words about governance."}],
        stream=True,
    )
    count = 0
    for chunk in chunks:
        piece = chunk.choices[0].delta.content if chunk.choices else None
        if piece:
            out.write(piece)
            out.flush()
            count += 1
    if count == 0:
        raise StepFailed("the stream carried no text")
    return f" ({count} chunks)"


def tools(client: openai.OpenAI, out: TextIO) -> str:
    ask = 'What is the weather in Paris? Please call get_weather {"city": "Paris"}'
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": ask}]
    first = client.chat.completions.create(model=SMALL_MODEL, messages=messages, tools=[WEATHER_TOOL])
    message = first.choices[0].message
    calls = [c for c in message.tool_calls or [] if c.type == "function" and c.function.name == "get_weather"]
    if not calls:
        raise StepFailed(f"the model did not call get_weather (it said {message.content!r})")
    messages.append(message.model_dump(exclude_none=True))  # type: ignore[arg-type]
    results = []
    for call in calls:
        args: Any = json.loads(call.function.arguments)
        city = args.get("city", "?") if isinstance(args, dict) else "?"
        results.append(get_weather(str(city)))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": results[-1]})
    final = client.chat.completions.create(model=SMALL_MODEL, messages=messages, tools=[WEATHER_TOOL])
    answer = final.choices[0].message.content
    if not answer:
        raise StepFailed("no final answer after the tool result")
    return f"get_weather -> {'; '.join(results)!r}; final answer {answer!r}"


def embeddings(client: openai.OpenAI, out: TextIO) -> str:
    texts = ["Bastion governs agents.", "Policies decide every call."]
    r = client.embeddings.create(model=EMBED_MODEL, input=texts)
    if len(r.data) != len(texts) or not all(d.embedding for d in r.data):
        raise StepFailed(f"expected {len(texts)} vectors, got {len(r.data)}")
    return f"{len(r.data)} vectors of {len(r.data[0].embedding)} dimensions from {r.model}"


def denied(client: openai.OpenAI, out: TextIO) -> str:
    try:
        client.chat.completions.create(model=DENIED_MODEL, messages=[{"role": "user", "content": "Hello?"}])
    except openai.PermissionDeniedError as e:
        return f"denied as expected: {error_text(e)}"
    raise StepFailed(f"{DENIED_MODEL} was allowed, but the policy should deny it")


STEPS: dict[str, Callable[[openai.OpenAI, TextIO], str]] = {
    "chat": chat,
    "stream": stream,
    "tools": tools,
    "embeddings": embeddings,
    "denied": denied,
}


def error_text(e: openai.OpenAIError) -> str:
    """The server's own error message when there is one, else the SDK's."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else None
        if isinstance(message, str):
            return message
    return str(e)


def run(client: openai.OpenAI, steps: Sequence[str], out: TextIO) -> int:
    """Run the named steps, printing one line each; 0 when all behaved as expected."""
    failures = 0
    for number, name in enumerate(steps, 1):
        out.write(f"[{number}/{len(steps)}] {name}: ")
        out.flush()
        try:
            summary = STEPS[name](client, out)
        except (StepFailed, openai.OpenAIError) as e:
            failures += 1
            detail = str(e) if isinstance(e, StepFailed) else f"{type(e).__name__}: {error_text(e)}"
            out.write(f"FAILED - {detail}\n")
        else:
            out.write(f"{summary}\n")
        out.flush()
    out.write("all steps behaved as expected\n" if failures == 0 else f"{failures} step(s) failed\n")
    return 0 if failures == 0 else 1


def _steps(raw: str) -> list[str]:
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in STEPS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown steps {unknown}; choose from {', '.join(STEPS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bastion.agents.reference_agent", description=__doc__)
    add_option(
        parser,
        "--base-url",
        env="BASTION_AGENT_BASE_URL",
        default="http://127.0.0.1:8080/openai/v1",
        help="OpenAI-compatible base URL (Bastion's /openai/v1 route)",
    )
    add_option(parser, "--api-key", env="BASTION_AGENT_KEY", default=None, cast=Secret, help="the agent's key")
    parser.add_argument(
        "--steps", type=_steps, default=list(STEPS), help=f"comma-separated subset of: {', '.join(STEPS)}"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request [default 30]")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.api_key is None:
        parser.error("no API key: pass --api-key or set BASTION_AGENT_KEY")
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key.get(), max_retries=0, timeout=args.timeout)
    with client:
        return run(client, args.steps, out or sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
