"""Helpers for tests that run real processes on real sockets."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bastion import bundled
from bastion.operators import OPERATOR_ROLES, Role, add_operator

ROOT = Path(__file__).resolve().parent.parent
BASTION = [sys.executable, "-m", "bastion.cli"]
# The policies folder a user edits (created by `bastion init`): no test reads it, and no process the
# tests start is given it (running() refuses). Tests copy the bundled policies instead.
LIVE_POLICIES = ROOT / "policies"
BUNDLED_POLICIES = bundled.POLICIES
# Operators' and approvers' hashed tokens, and bytecode: never copied.
_USER_STATE = ("operators.yaml", "approvers.yaml", "__pycache__")


def copy_policies(target: Path, *ignore: str) -> Path:
    """A copy of the bundled policies at ``target`` (without ``ignore`` patterns, e.g. "tests")."""
    shutil.copytree(BUNDLED_POLICIES, target, ignore=shutil.ignore_patterns(*_USER_STATE, *ignore))
    return target


def is_live_policies(value: str) -> bool:
    """Whether an argument or environment value names the live policies folder or a file in it."""
    if "://" in value or not value or "\n" in value:
        return False
    value = value.split("=", 1)[1] if value.startswith("--") and "=" in value else value
    try:
        path = (ROOT / value).resolve()
    except (OSError, ValueError):
        return False
    return path == LIVE_POLICIES or LIVE_POLICIES in path.parents


# One copy serves every process and command that does not name its own (BASTION_POLICIES, set for
# the whole run by conftest.py): without it they would read the default `policies`, the live folder.
SESSION_POLICIES = copy_policies(Path(tempfile.mkdtemp(prefix="bastion-test-policies-")) / "policies")
atexit.register(shutil.rmtree, SESSION_POLICIES.parent, True)


def refuse_live_policies(args: Sequence[str], env: dict[str, str]) -> None:
    """Fail when a process would read the live policies folder: named in an argument or the
    environment, or left to the default (no --policies and no BASTION_POLICIES)."""
    values = [*args, *(v for k, v in env.items() if k.startswith("BASTION_"))]
    named = [v for v in values if is_live_policies(v)]
    if named:
        raise AssertionError(f"tests must not give a process the live policies folder: {named}")
    named_own = any(a == "--policies" or a.startswith("--policies=") for a in args)
    if not named_own and not env.get("BASTION_POLICIES"):
        raise AssertionError("a process without --policies or BASTION_POLICIES would read the live policies")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (all held open while picking, so none repeats)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_for_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 2xx, or fail with the process's output."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            r = httpx.get(url, timeout=1.0)
            if r.is_success:
                return
            last = r.status_code
        except httpx.HTTPError as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s (last: {last!r})")


@contextmanager
def running(
    args: Sequence[str], env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a process for the duration of the block, then stop it with SIGTERM (SIGKILL after 10 s)."""
    merged = {**os.environ, **CREDENTIALS_ENV, **(env or {})}
    refuse_live_policies(args, merged)
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(list(args), env=merged, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        yield proc
    finally:
        stop(proc)
        if log:
            out.close()  # type: ignore[union-attr]


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def create_key(keys_file: Path, agent: str = "agent-1", role: str = "assistant") -> str:
    """Issue a key with `bastion keys create`, as a user would; returns the key it printed."""
    out = subprocess.run(
        [*BASTION, "keys", "create", "--agent", agent, "--role", role, "--keys-file", str(keys_file)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip().splitlines()[-1]


# Test credentials, one set for the whole run: every Bastion process the tests start gets the
# proxies' service credential and this operators file (CREDENTIALS_ENV, merged by `running`).
PROXY_TOKEN = "bpx_test-proxy-credential-0123456789"
_OPERATORS_DIR = Path(tempfile.mkdtemp(prefix="bastion-test-operators-"))
atexit.register(shutil.rmtree, _OPERATORS_DIR, True)
OPERATORS_FILE = _OPERATORS_DIR / "operators.yaml"
TOKENS = {role: add_operator(OPERATORS_FILE, f"test-{role}", role) for role in OPERATOR_ROLES}
TOKENS[Role.PROXY] = PROXY_TOKEN
CREDENTIALS_ENV = {
    "BASTION_PROXY_TOKEN": PROXY_TOKEN,
    "BASTION_OPERATORS_FILE": str(OPERATORS_FILE),
    # One process per proxy whatever the environment says: tests read one outbox and chain per proxy
    # and start many proxies on 2 cores. tests/proxy/test_workers.py runs several.
    "BASTION_PROXY_WORKERS": "1",
}
# The routes only proxies may use.
_PROXY_ROUTES = re.compile(r"/v1/traces|/api/approvals(/[^/]+/(wait|close))?|/api/agents/[^/]+/guidance/[^/]+/claim")


def proxy_route(method: str, path: str) -> bool:
    """Whether only a proxy may call ``method path`` (sending spans, holding and awaiting calls)."""
    return bool(_PROXY_ROUTES.fullmatch(path)) and (method == "POST" or path.endswith("/wait"))


class TestCredentials:
    """Plays the proxy on the routes only proxies use (POSTing spans, holding calls) and the operator
    of ``role`` on every other route. A request that sets its own Authorization header keeps it
    (an empty one sends no credential)."""

    def __init__(self, role: str = Role.ADMIN) -> None:
        self.role = Role(role)

    def __call__(self, request: Any) -> Any:  # an httpx (or Starlette TestClient's httpx2) request
        if "authorization" not in request.headers:
            proxy = proxy_route(request.method, request.url.path)
            request.headers["authorization"] = f"Bearer {TOKENS[Role.PROXY if proxy else self.role]}"
        elif not request.headers["authorization"]:
            del request.headers["authorization"]
        return request


def collector_api(url: str, role: str = Role.ADMIN) -> httpx.Client:
    """An HTTP client for the collector's API at ``url`` with the test credentials (TestCredentials).
    Close it (``with collector_api(url) as api: ...``)."""
    return httpx.Client(base_url=url, timeout=10.0, auth=TestCredentials(role))


# For one-off requests: httpx.get(auth=AUTH, url=...) reads as the test admin.
AUTH = TestCredentials()


def cli_env(role: str = Role.VIEWER) -> dict[str, str]:
    """The environment of a `bastion` command run as the test operator of ``role`` (BASTION_TOKEN)."""
    return {**os.environ, **CREDENTIALS_ENV, "BASTION_TOKEN": TOKENS[Role(role)]}
