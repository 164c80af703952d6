"""Listening sockets that fail loudly, naming the part and the address it could not take."""

from __future__ import annotations

import socket
from typing import Any


class BusyPort(SystemExit):
    """A listener could not bind; its message names the part, the address and the reason."""


def bind(what: str, host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` for ``what`` (not yet listening), or :class:`BusyPort`."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise BusyPort(f"bastion {what}: cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is not busy
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise BusyPort(f"bastion {what}: cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def check_free(what: str, host: str, port: int) -> None:
    """Fail with :class:`BusyPort` unless ``host:port`` can be bound now (for servers that bind themselves)."""
    bind(what, host, port).close()


def serve_asgi(app: Any, sock: socket.socket, log_level: str = "warning") -> None:
    """Run an ASGI app with uvicorn on ``sock`` (from :func:`bind`) until SIGINT or SIGTERM. Logging
    stays as `bastion.logs` set it up (text or JSON); uvicorn's own loggers only get the level."""
    import uvicorn

    config = uvicorn.Config(app, log_config=None, log_level=log_level, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
