"""``bastion proxy --workers N``: N proxy processes sharing the listening ports.

One Python process serves on one core (mitmproxy's event loop and the GIL), so a proxy scales across
cores the way it scales across machines: as replicas. The supervisor (this module) starts N copies
of its own command line, each told which worker it is (``BASTION_PROXY_WORKER``); each opens the
ports with ``SO_REUSEPORT`` (``master.share_ports``) and the kernel spreads connections over them.
A worker is a replica like any other: its own outbox and audit chain instance (``worker-N`` inside
the outbox directory, the first worker in the directory itself), its own /metrics port
(``--metrics-port`` + N - 1), and the keys, policies and
controls every replica reads. What replicas must share, workers share: the CA in the confdir
(created here, before any worker starts) and the MCP session secret (the proxy token, or a random
secret drawn here for this run).

A worker that dies while serving (killed, out of memory) is started again; its outbox keeps every
record it had answered for, and the new process ships them. A worker that fails while starting
(a bad policy file, a busy port) stops the whole proxy with its exit status: fail closed, loudly.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from mitmproxy import certs

from bastion.children import die_with_parent
from bastion.proxy.mcp_sessions import SECRET_ENV
from bastion.settings import WORKER_ENV, ProxySettings

log = logging.getLogger(__name__)
# A worker that exits with an error sooner than this after its start failed to start.
STARTUP_SECONDS = 10.0
# mitmproxy's CA file names and key size (tlsconfig's defaults).
_CA_BASENAME = "mitmproxy"
_CA_KEY_SIZE = 2048


class Supervisor:
    def __init__(self, settings: ProxySettings, argv: Sequence[str]) -> None:
        self.settings = settings
        self.argv = [sys.executable, "-m", "bastion.cli", *argv]
        self.procs: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
        self.stopping = False

    def start(self, worker: int) -> None:
        env = {**os.environ, WORKER_ENV: str(worker)}
        proc = subprocess.Popen(self.argv, env=env, preexec_fn=die_with_parent)
        self.procs[worker] = (proc, time.monotonic())

    def stop(self, *_: object) -> None:
        self.stopping = True
        for proc, _started in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def run(self) -> int:
        self.settings.confdir.mkdir(parents=True, exist_ok=True)
        certs.CertStore.from_store(self.settings.confdir, _CA_BASENAME, _CA_KEY_SIZE)  # one CA for all workers
        if self.settings.proxy_token is None:
            os.environ.setdefault(SECRET_ENV, secrets.token_urlsafe(32))
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.stop)
        for worker in range(1, self.settings.workers + 1):
            self.start(worker)
        while True:
            for worker, (proc, started) in list(self.procs.items()):
                status = proc.poll()
                if status is None or self.stopping:
                    continue
                # Killed by a signal (the OOM killer, an operator): start it again whenever it happened.
                if status > 0 and time.monotonic() - started < STARTUP_SECONDS:
                    log.error("proxy worker %d failed to start (status %d): stopping every worker", worker, status)
                    self.stop()
                    self._wait()
                    return status or 1
                log.warning("proxy worker %d exited with status %d while serving: starting it again", worker, status)
                self.start(worker)
            if self.stopping:
                return self._wait()
            time.sleep(0.2)

    def _wait(self) -> int:
        status = 0
        for proc, _started in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            status = status or (proc.returncode if proc.returncode > 0 else 0)
        return status
