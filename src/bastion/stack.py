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

from bastion import listen, logs
from bastion import settings as s
from bastion.children import die_with_parent
from bastion.operators import Role, add_operator, new_proxy_token

DEMO_AGENT = "demo-agent"
DEMO_ROLE = "assistant"
SCRIPTED_PROVIDER_KEY = "scripted-provider-key"
BASTION = [sys.executable, "-m", "bastion.cli"]


class Stack:
    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        # Own process group: a Ctrl-C reaches only `up`, which then stops the children in order;
        # and they end with `up` even when it is killed hard (children.die_with_parent).
        proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, process_group=0, preexec_fn=die_with_parent)
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
        """Stop the children newest first, so the proxy flushes its spans while the collector still runs.
        Further Ctrl-C and SIGTERM are ignored meanwhile: `make demo` runs `up` under `uv run`, which
        passes on the terminal's SIGINT, so `up` gets it twice, and the second must not cut the order."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _demo_operator(demo_dir: Path) -> tuple[Path, Path]:
    """A fresh admin for the demo: its operators file, and its token in operator.token (mode 0600)."""
    operators = demo_dir / "operators.yaml"
    operators.unlink(missing_ok=True)
    token = add_operator(operators, "demo-admin", Role.ADMIN)
    token_file = demo_dir / "operator.token"
    token_file.unlink(missing_ok=True)
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return operators, token_file


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
        "BASTION_GEMINI_UPSTREAM": os.environ.get("BASTION_GEMINI_UPSTREAM") or scripted,
        "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY") or SCRIPTED_PROVIDER_KEY,
        "ANTHROPIC_API_KEY": os.environ.get("ANTHROPIC_API_KEY") or SCRIPTED_PROVIDER_KEY,
        "GEMINI_API_KEY": os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY") or SCRIPTED_PROVIDER_KEY,
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


def _operators_hint(args: argparse.Namespace) -> str:
    from bastion.operators import FILE_NAME, list_operators

    if list_operators(args.operators_file or Path(args.policies) / FILE_NAME):
        return "Sign in to the dashboard with your operator token (bastion operators add)."
    return (
        "No operators yet: the dashboard and the API need a token. Create one with\n"
        "  bastion operators add --name you --role admin\n"
    )


def _listeners(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """What `up` will start listening, as (part and flag, host, port)."""
    found = [
        ("collector (--collector-port)", args.collector_host, args.collector_port),
        ("proxy (reverse, --proxy-port)", args.proxy_host, args.proxy_port),
        ("proxy (explicit, --explicit-port)", args.proxy_host, args.explicit_port),
        ("dashboard (--dashboard-port)", args.dashboard_host, args.dashboard_port),
    ]
    if args.metrics_port is not None:
        found.append(("proxy (metrics, --metrics-port)", args.proxy_host, args.metrics_port))
    if args.demo:
        found += [
            ("scripted-model (--scripted-model-port)", "127.0.0.1", args.scripted_model_port),
            ("tool-server (--tool-server-port)", "127.0.0.1", args.tool_server_port),
        ]
    return found


def _demo_keys_hint(keys_file: Path) -> str:
    return (
        f"The demo's agent keys are in {keys_file} (a fresh one each run). Issue another agent a key there with\n"
        f"  bastion keys create --agent my-agent --role assistant --keys-file {keys_file}\n"
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def children(
    args: argparse.Namespace, proxy_token: str, demo: dict[str, Path] | None = None
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each child's command line and environment, derived from `up`'s ``args`` and the settings'
    one declaration (secrets in the environment only). ``demo`` names the demo's keys and operators
    files, which replace the configured ones."""
    url = s.collector_url(args.collector_host, args.collector_port)
    overrides: dict[str, object] = {"proxy_token": s.Secret(proxy_token), "collector_url": url}
    if demo is not None:
        overrides |= {"keys_file": demo["keys"], "operators_file": demo["operators"]}
    found = {}
    for part in s.CHILDREN:
        argv, env = s.child_command(args, part, overrides)
        found[part] = ([*BASTION, part, *argv], env)
    return found


def up(args: argparse.Namespace) -> int:
    collector = s.collector_settings(args)
    collector_url = s.collector_url(collector.host, collector.port)
    proxy_url = f"http://{args.proxy_host}:{args.proxy_port}"
    dashboard_url = f"http://{args.dashboard_host}:{args.dashboard_port}"
    try:  # a busy port stops `up` before it starts anything (another stack would answer its checks)
        for what, host, port in _listeners(args):
            listen.check_free(what, host, port)
    except listen.BusyPort as e:
        print(f"{e}; is another Bastion running?", file=sys.stderr)
        return 1
    # Children log as `up` was told to (flags win over the environment they inherit).
    os.environ[logs.LEVEL_ENV], os.environ[logs.FORMAT_ENV] = args.log_level, args.log_format
    stack = Stack()
    signal.signal(signal.SIGTERM, _interrupt)
    # The proxies' service credential: the one configured (environment or file), else a fresh one
    # for this run. It goes to the children in their environment, never on a command line.
    proxy_token = collector.proxy_token.get() if collector.proxy_token else new_proxy_token()
    token_file = None
    try:
        demo_env: dict[str, str] = {}
        dashboard_env: dict[str, str] = {}
        demo_key = None
        demo_files = None
        if args.demo:
            demo_env, demo_key = _demo_setup(args, stack)
            operators, token_file = _demo_operator(Path(args.data_dir).parent / "demo")
            demo_files = {"keys": Path(demo_env["BASTION_KEYS_FILE"]), "operators": operators}
            dashboard_env["BASTION_TOKEN"] = token_file.read_text().strip()
        commands = children(args, proxy_token, demo_files)
        argv, env = commands[s.COLLECTOR]
        stack.start("collector", argv, env)
        stack.wait_healthy("collector", f"{collector_url}/healthz")
        argv, env = commands[s.PROXY]
        stack.start("proxy", argv, {**demo_env, **env})
        stack.wait_healthy("proxy", f"{proxy_url}/healthz")
        argv, env = commands[s.DASHBOARD]
        stack.start("dashboard", argv, {**dashboard_env, **env})
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
        if token_file is not None:
            print(
                f"An admin token for the dashboard and the CLI is in {token_file.resolve()} (mode 0600):\n"
                f"  export BASTION_TOKEN=$(cat {token_file})   # then: bastion approvals list\n",
                flush=True,
            )
        else:
            print(_operators_hint(args), flush=True)
        if demo_key is not None:
            print(_demo_keys_hint(Path(demo_env["BASTION_KEYS_FILE"])), flush=True)
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
