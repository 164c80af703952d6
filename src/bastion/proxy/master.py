"""A lean mitmproxy master: only the built-in addons Bastion's two modes need.

mitmdump's ``DumpMaster`` loads 31 built-in addons (cookies, replay, save, onboarding, mapping, ...)
and mitmproxy walks every addon for every hook of every flow, so with Bastion's own addons about 50
are visited per hook: a quarter of the proxy's time at 32 concurrent calls. Bastion needs the proxy
server, the next-layer decision, TLS interception (explicit mode) and the start-up error check;
``Block`` (public clients refused unless ``block_global`` is off) and ``DisableH2C`` (h2c upgrades
stripped) keep mitmproxy's defaults for who may connect and what is spoken.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mitmproxy import master, options
from mitmproxy.addons import block, core, disable_h2c, errorcheck, next_layer, proxyserver, tlsconfig
from mitmproxy.proxy import mode_servers


def builtin_addons() -> list[object]:
    """The built-in addons a Bastion proxy runs, in mitmproxy's own order."""
    return [
        core.Core(),
        block.Block(),
        disable_h2c.DisableH2C(),
        proxyserver.Proxyserver(),  # type: ignore[no-untyped-call]
        next_layer.NextLayer(),
        tlsconfig.TlsConfig(),
        errorcheck.ErrorCheck(),
    ]


def lean_master(opts: options.Options) -> master.Master:
    """A master with :func:`builtin_addons` (built inside a running event loop, like any master)."""
    m = master.Master(opts, with_termlog=False)
    m.addons.add(*builtin_addons())  # type: ignore[no-untyped-call]
    return m


def share_ports() -> None:
    """Open mitmproxy's TCP listeners with ``SO_REUSEPORT``, so that several worker processes listen on
    the same ports and the kernel spreads connections over them. mitmproxy has no option for it: its
    asyncio listener (``AsyncioServerInstance.listen``) is wrapped, for TCP modes only (tests check
    that the wrapped method still exists, so an upgrade that moves it fails there, not in production)."""
    original = mode_servers.AsyncioServerInstance.listen

    async def listen(self: mode_servers.AsyncioServerInstance[Any], host: str, port: int) -> list[Any]:
        if self.mode.transport_protocol != "tcp":
            return await original(self, host, port)
        return [await asyncio.start_server(self.handle_stream, host, port, reuse_port=True)]

    mode_servers.AsyncioServerInstance.listen = listen  # type: ignore[method-assign]
