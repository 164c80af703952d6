"""`bastion up`: the collector, the proxy and the dashboard as child processes, stopped together."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bastion import settings as s

DEMO_AGENT = "demo-agent"
DEMO_ROLE = "assistant"
SCRIPTED_PROVIDER_KEY = "scripted-provider-key"
BASTION = [sys.executable, "-m", "bastion.cli"]


class Stack:
    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        # Own process group: a Ctrl-C reaches only `up`, which then stops the children in order.
        proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, process_group=0)
        self.children.append((name, proc))
        return proc

    def wait_healthy(self, name: str, url: str, timeout: float = 60.0) -> None:
        proc = dict(self.children)[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode}")
            try:
                if httpx.get(url, timeout=1.0).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not become healthy at {url} within {timeout:.0f}s")

    def failed(self) -> str | None:
        return next((name for name, proc in self.children if proc.poll() is not None), None)

    def stop(self) -> None:
        """Stop the children newest first, so the proxy flushes its spans while the collector still runs."""
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _demo_setup(args: argparse.Namespace, stack: Stack) -> tuple[dict[str, str], str]:
    """Start the scripted model and tool server, issue a fresh demo key; returns the proxy's env and the key."""
    from bastion.proxy.keys import create_key

    port = args.scripted_model_port
    stack.start("scripted-model", [*BASTION, "scripted-model", "--port", str(port)])
    stack.wait_healthy("scripted-model", f"http://127.0.0.1:{port}/v1/models")
    tools_port = args.tool_server_port
    stack.start("tool-server", [*BASTION, "tool-server", "--port", str(tools_port)])
    stack.wait_healthy("tool-server", f"http://127.0.0.1:{tools_port}/_tool_server/calls")
    keys_file = Path(args.data_dir).parent / "demo" / "keys.yaml"
    keys_file.unlink(missing_ok=True)
    key, _ = create_key(keys_file, DEMO_AGENT, DEMO_ROLE)
    scripted = f"http://127.0.0.1:{port}/"
    env = {
        "BASTION_OPENAI_UPSTREAM": os.environ.get("BASTION_OPENAI_UPSTREAM") or scripted,
        "BASTION_ANTHROPIC_UPSTREAM": os.environ.get("BASTION_ANTHROPIC_UPSTREAM") or scripted,
        "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY") or SCRIPTED_PROVIDER_KEY,
        "ANTHROPIC_API_KEY": os.environ.get("ANTHROPIC_API_KEY") or SCRIPTED_PROVIDER_KEY,
        "BASTION_KEYS_FILE": str(keys_file),
        "BASTION_MCP_TOOLS_URL": os.environ.get("BASTION_MCP_TOOLS_URL") or f"http://127.0.0.1:{tools_port}/mcp",
    }
    return env, key


DEMO_AGENTS = {
    "Reference agent": ["bastion.agents.reference_agent", "--base-url", "{proxy}/openai/v1"],
    "Tool agent": ["bastion.agents.tool_agent", "--proxy-url", "{proxy}"],
}


def _run_demo_agents(proxy_url: str, dashboard_url: str, key: str) -> None:
    for name, argv in DEMO_AGENTS.items():
        print(f"\n{name}:", flush=True)
        command = [sys.executable, "-m", *(a.format(proxy=proxy_url) for a in argv)]
        done = subprocess.run(command, env={**os.environ, "BASTION_AGENT_KEY": key})
        print(f"{name} finished with status {done.returncode}.", flush=True)
    print(f"\nSee their calls at {dashboard_url}\n", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def up(args: argparse.Namespace) -> int:
    collector = s.collector_settings(args)
    collector_url = f"http://{collector.host}:{collector.port}"
    proxy_url = f"http://{args.proxy_host}:{args.proxy_port}"
    dashboard_url = f"http://{args.dashboard_host}:{args.dashboard_port}"
    stack = Stack()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        proxy_env: dict[str, str] = {}
        demo_key = None
        if args.demo:
            proxy_env, demo_key = _demo_setup(args, stack)
        stack.start(
            "collector",
            [
                *BASTION,
                "collector",
                "--collector-host",
                collector.host,
                "--collector-port",
                str(collector.port),
                "--data-dir",
                str(collector.data_dir),
                "--policies",
                str(args.policies),
            ],
        )
        stack.wait_healthy("collector", f"{collector_url}/healthz")
        stack.start(
            "proxy",
            [
                *BASTION,
                "proxy",
                "--proxy-host",
                args.proxy_host,
                "--proxy-port",
                str(args.proxy_port),
                "--explicit-port",
                str(args.explicit_port),
                "--policies",
                str(args.policies),
                "--confdir",
                str(args.confdir),
                "--max-body-bytes",
                str(args.max_body_bytes),
                "--collector-url",
                collector_url,
                *(["--keys-file", str(args.keys_file)] if args.keys_file else []),
            ],
            proxy_env,
        )
        stack.wait_healthy("proxy", f"{proxy_url}/healthz")
        stack.start(
            "dashboard",
            [
                *BASTION,
                "dashboard",
                "--dashboard-host",
                args.dashboard_host,
                "--dashboard-port",
                str(args.dashboard_port),
                "--collector-url",
                collector_url,
            ],
        )
        stack.wait_healthy("dashboard", f"{dashboard_url}/_stcore/health")
        print(
            "\nBastion is up.\n"
            f"  proxy (agents' base URL)    {proxy_url}/openai/v1  and  {proxy_url}/anthropic\n"
            f"  MCP servers                 {proxy_url}/mcp/<name>\n"
            f"  explicit proxy (HTTPS_PROXY) http://AGENT:KEY@{args.proxy_host}:{args.explicit_port}\n"
            f"  CA certificate              {(Path(args.confdir) / 'mitmproxy-ca-cert.pem').resolve()}\n"
            f"  collector API               {collector_url}/api/audit\n"
            f"  dashboard                   {dashboard_url}\n",
            flush=True,
        )
        if demo_key is not None:
            _run_demo_agents(proxy_url, dashboard_url, demo_key)
        print("Press Ctrl-C to stop.", flush=True)
        while (name := stack.failed()) is None:
            time.sleep(0.5)
        print(f"{name} exited; stopping the stack.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as e:
        print(f"bastion up: {e}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
