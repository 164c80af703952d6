"""The reference agent, run directly against the scripted model server (no proxy in between)."""

from __future__ import annotations

import io
import subprocess
import sys

import httpx

from bastion.agents import reference_agent
from factories import clients
from support import ROOT, free_port

KEY = "sk-agent-secret-key-123"
ALLOWED_STEPS = "chat,stream,tools,embeddings"


def agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion.agents.reference_agent", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        timeout=60,
    )


def test_allowed_steps_succeed_and_never_print_the_key(server: str) -> None:
    httpx.delete(f"{server}/_scripted/requests")
    env = {"BASTION_AGENT_BASE_URL": f"{server}/v1", "BASTION_AGENT_KEY": KEY}
    result = agent("--steps", ALLOWED_STEPS, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[1/4] chat: scripted-small answered 'Scripted reply to: Say hello to Bastion.'"
    assert lines[1] == "[2/4] stream: Scripted reply to: Stream a few words about governance. (4 chunks)"
    assert lines[2].startswith("[3/4] tools: get_weather -> 'Sunny and 21 C in Paris'; final answer 'Tool result")
    assert lines[3] == "[4/4] embeddings: 2 vectors of 16 dimensions from scripted-embed"
    assert lines[4] == "all steps behaved as expected"
    assert KEY not in result.stdout + result.stderr

    seen = httpx.get(f"{server}/_scripted/requests").json()
    assert [r["path"] for r in seen] == ["/v1/chat/completions"] * 4 + ["/v1/embeddings"]
    assert {r["headers"]["authorization"] for r in seen} == {f"Bearer {KEY}"}
    assert {r["body"]["model"] for r in seen} == {"scripted-small", "scripted-embed"}


def test_an_allowed_large_model_is_a_failure(server: str) -> None:
    out = io.StringIO()
    client = clients.openai_client(f"{server}/v1", KEY)
    assert reference_agent.run(client, ["chat", "denied"], out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[1/2] chat: scripted-small answered")
    assert lines[1] == "[2/2] denied: FAILED - scripted-large was allowed, but the policy should deny it"
    assert lines[2] == "1 step(s) failed"


def test_unreachable_base_url_fails_every_step() -> None:
    out = io.StringIO()
    url = f"http://127.0.0.1:{free_port()}/v1"
    assert reference_agent.main(["--base-url", url, "--api-key", KEY, "--steps", "chat,denied"], out=out) == 1
    text = out.getvalue()
    assert text.count("FAILED - APIConnectionError") == 2
    assert KEY not in text


def test_missing_key_is_a_usage_error() -> None:
    result = agent("--steps", "chat")
    assert result.returncode == 2
    assert "no API key: pass --api-key or set BASTION_AGENT_KEY" in result.stderr


def test_unknown_step_is_a_usage_error() -> None:
    result = agent("--api-key", KEY, "--steps", "chat,fly")
    assert result.returncode == 2
    assert "unknown steps ['fly']" in result.stderr
