"""Bastion's processes for the end-to-end stacks: the scripted model, the tool server, the collector, proxies.

Each starts its process on the given port, logs to tmp/<name>.log, stops it when the block ends and
yields a Service; `ready` then waits for the services' health endpoints, so a stack starts side by side.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from support import BASTION, running, wait_for_http

PROVIDER_KEY = "real-provider-key"


@dataclass
class Service:
    url: str
    health: str
    timeout: float
    proc: subprocess.Popen[bytes]
    log: Path


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def routes_env(model: str, keys_file: Path, collector: str) -> dict[str, str]:
    """A proxy's environment: OpenAI, Anthropic and Gemini routed to the scripted model with PROVIDER_KEY."""
    return {
        "BASTION_OPENAI_UPSTREAM": model + "/",
        "BASTION_ANTHROPIC_UPSTREAM": model + "/",
        "BASTION_GEMINI_UPSTREAM": model + "/",
        "OPENAI_API_KEY": PROVIDER_KEY,
        "ANTHROPIC_API_KEY": PROVIDER_KEY,
        "GEMINI_API_KEY": PROVIDER_KEY,
        "BASTION_KEYS_FILE": str(keys_file),
        "BASTION_COLLECTOR_URL": collector,
    }


def ready(*services: Service) -> None:
    """Wait until each service answers; one that exits or never answers fails with the end of its log."""
    for s in services:
        try:
            wait_for_http(s.health, timeout=s.timeout, proc=s.proc)
        except (RuntimeError, TimeoutError) as e:
            raise RuntimeError(f"{e}\n--- {s.log} ---\n{s.log.read_text(errors='replace')[-4000:]}") from e


@contextmanager
def _service(
    tmp: Path, name: str, args: Sequence[str], port: int, health: str, env: dict[str, str], timeout: float = 30
) -> Iterator[Service]:
    log = tmp / f"{name}.log"
    with running(args, env, log=log) as proc:
        yield Service(url(port), url(port) + health, timeout, proc, log)


def scripted_model(tmp: Path, port: int, chunk_delay: float | None = None) -> AbstractContextManager[Service]:
    env = {} if chunk_delay is None else {"BASTION_SCRIPTED_CHUNK_DELAY": str(chunk_delay)}
    return _service(tmp, "model", [*BASTION, "scripted-model", "--port", str(port)], port, "/healthz", env)


def tool_server(tmp: Path, port: int, suite: str = "demo") -> AbstractContextManager[Service]:
    args = [*BASTION, "tool-server", "--port", str(port), "--suite", suite]
    return _service(tmp, "tools", args, port, "/_tool_server/calls", {})


def collector(tmp: Path, port: int, env: dict[str, str] | None = None) -> AbstractContextManager[Service]:
    """Stores its data in tmp/data."""
    args = [*BASTION, "collector", "--collector-port", str(port), "--data-dir", str(tmp / "data")]
    return _service(tmp, "collector", args, port, "/healthz", env or {}, timeout=60)


def proxy(
    tmp: Path,
    name: str,
    ports: Sequence[int],
    env: dict[str, str],
    policies: Path | None = None,
    extra_args: Sequence[str] = (),
) -> AbstractContextManager[Service]:
    """A proxy on ports (reverse, explicit), with its own confdir and outbox under tmp/<name>; its URL is the
    reverse proxy's."""
    reverse_port, explicit_port = ports
    args = [*BASTION, "proxy", "--proxy-port", str(reverse_port), "--explicit-port", str(explicit_port)]
    if policies is not None:
        args += ["--policies", str(policies)]
    args += ["--confdir", str(tmp / name / "conf"), "--outbox-dir", str(tmp / name / "outbox"), *extra_args]
    return _service(tmp, name, args, reverse_port, "/healthz", env, timeout=60)


def dashboard(tmp: Path, port: int, collector: str) -> AbstractContextManager[Service]:
    """The Streamlit dashboard reading ``collector``; nobody is signed in (no BASTION_TOKEN)."""
    args = [*BASTION, "dashboard", "--dashboard-port", str(port), "--collector-url", collector]
    return _service(tmp, "dashboard", args, port, "/_stcore/health", {"BASTION_TOKEN": ""}, timeout=60)
