"""The image's HEALTHCHECK: asks the part PID 1 runs (its subcommand) for its health endpoint.

Standard library only; exits 0 when healthy, 1 otherwise.
"""

from __future__ import annotations

import os
import sys
import urllib.request

# subcommand -> (port flag, port variable, default port, path)
CHECKS = {
    "proxy": ("--proxy-port", "BASTION_PROXY_PORT", 8080, "/healthz"),
    "collector": ("--collector-port", "BASTION_COLLECTOR_PORT", 4318, "/healthz"),
    "dashboard": ("--dashboard-port", "BASTION_DASHBOARD_PORT", 8501, "/_stcore/health"),
    "scripted-model": ("--port", "BASTION_SCRIPTED_MODEL_PORT", 9100, "/healthz"),
    "tool-server": ("--port", "BASTION_TOOL_SERVER_PORT", 9200, "/_tool_server/calls"),
}


def subcommand(cmdline: list[str]) -> str | None:
    return next((arg for arg in cmdline if arg in CHECKS), None)


def url(cmdline: list[str], environ: dict[str, str]) -> str | None:
    """The health URL of the part ``cmdline`` runs: its port flag, else its variable, else the default."""
    part = subcommand(cmdline)
    if part is None:
        return None
    flag, variable, port, path = CHECKS[part]
    chosen = environ.get(variable) or str(port)
    for i, arg in enumerate(cmdline):
        if arg == flag and i + 1 < len(cmdline):
            chosen = cmdline[i + 1]
        elif arg.startswith(flag + "="):
            chosen = arg.split("=", 1)[1]
    return f"http://127.0.0.1:{chosen}{path}"


def main() -> int:
    with open("/proc/1/cmdline", "rb") as f:
        cmdline = [a.decode() for a in f.read().split(b"\0") if a]
    target = url(cmdline, dict(os.environ))
    if target is None:
        print(f"healthcheck: no health endpoint for {' '.join(cmdline)}", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(target, timeout=4) as response:  # loopback only
            return 0 if response.status == 200 else 1
    except OSError as e:
        print(f"healthcheck: {target}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
