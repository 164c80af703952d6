"""Where the explicit proxy may connect: the plain logic behind the ``Egress`` addon.

A ``CONNECT`` opens a tunnel only for an agent with a key, to a host a route claims or that one of
the agent's allow (or review) rules could reach: ``http:<host>[:<port>]/...`` or
``tcp:<host>:<port>``. What is not HTTP inside a tunnel is raw TCP, decided as ``tcp:<host>:<port>``
with action ``connect``. Internal addresses (loopback, private, link-local, unspecified, multicast,
anything not globally routable) and Bastion's own listening addresses are refused unless the
deciding rule names the host itself: ``http:127.0.0.1:9200/*`` names 127.0.0.1, ``http:*`` does not.
DNS names are resolved once, every address is checked, and the connection goes to a checked one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass

from bastion.proxy.classify import authority
from bastion.proxy.decision import Decision, deny, error
from bastion.proxy.keys import Identity

TCP_ACTION = "connect"
INTERNAL_ADDRESS_RULE = "internal-address"
OWN_ADDRESS_RULE = "bastion-address"
UNRESOLVABLE_RULE = "unresolvable-host"
OUTSIDE_TUNNEL_RULE = "tcp-outside-tunnel"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses a name resolves to; asyncio's resolver in the proxy, a table in tests.
Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True)
class Tunnel:
    """An open CONNECT tunnel: who opened it, and to where."""

    identity: Identity
    host: str
    port: int


@dataclass(frozen=True)
class Pin:
    """Where connections to a host and port go, once checked: ``address``. When it is ``internal``,
    only calls that a rule naming the host allows may use it."""

    address: str
    internal: bool


def http_prefix(host: str, port: int) -> str:
    """What every HTTP object for calls to ``host:port`` starts with."""
    return f"http:{authority(host, port)}/"


def tcp_object(host: str, port: int) -> str:
    """The object of raw TCP to ``host:port``; the port is always written."""
    name = f"[{host}]" if ":" in host else host
    return f"tcp:{name}:{port}"


def ip(text: str) -> IPAddress | None:
    """``text`` as an IP address (an IPv6 zone is dropped), or None for a name."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _embedded(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped ``::ffff:a.b.c.d`` or 6to4), else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        return address.ipv4_mapped or address.sixtofour or address
    return address


def category(address: IPAddress, port: int, own: Collection[tuple[IPAddress, int]]) -> tuple[str, str] | None:
    """Why Bastion does not connect to ``address:port`` unless a rule names it: (rule, what it is),
    or None for a public address."""
    inner = _embedded(address)
    if (address, port) in own or (inner, port) in own:
        return OWN_ADDRESS_RULE, "one of Bastion's own listening addresses"
    for kind, test in (
        ("unspecified", inner.is_unspecified),
        ("loopback", inner.is_loopback),
        ("link-local", inner.is_link_local),
        ("multicast", inner.is_multicast),
        ("private", inner.is_private),
        ("not globally routable", not inner.is_global),
    ):
        if test:
            return INTERNAL_ADDRESS_RULE, f"a {kind} address"
    return None


def address_refusal(
    host: str, port: int, addresses: Sequence[str], own: Collection[tuple[IPAddress, int]]
) -> Decision | None:
    """The refusal when any address ``host`` resolved to is internal or Bastion's own; None when
    every one is public. A name that resolves to nothing is refused too."""
    if not addresses:
        return error(UNRESOLVABLE_RULE, f"{host} does not resolve to any address")
    for text in addresses:
        address = ip(text)
        found = category(address, port, own) if address is not None else (INTERNAL_ADDRESS_RULE, "not an IP address")
        if found is not None:
            rule, what = found
            via = "" if text == host else f" resolves to {text}, which"
            reason = (
                f"{host}{via} is {what}: Bastion connects there only when the agent's rule names "
                f"{host} itself (e.g. {http_prefix(host, port)}*)"
            )
            return deny(rule, reason)
    return None


_HOST_END = re.compile(r"[:/]")


def named_host(pattern: str) -> str | None:
    """The host an ``http:`` or ``tcp:`` object pattern names literally (no wildcard in it), else None.
    An IPv6 address is written in brackets, the first one as the set ``[[]`` (wildcardMatch reads
    ``[`` as the start of a set): ``http:[[]::1]:8080/*``."""
    scheme, colon, rest = pattern.partition(":")
    if not colon or scheme not in ("http", "tcp"):
        return None
    if rest.startswith("[[]"):
        named, bracket, _ = rest[3:].partition("]")
        if not bracket:
            return None
    else:
        named = _HOST_END.split(rest, maxsplit=1)[0]
    if not named or any(c in named for c in "*?["):
        return None
    return named


def names_host(pattern: str, host: str) -> bool:
    """Does a rule's object pattern name ``host`` itself? IP addresses compare as addresses, names
    without regard to case; ``localhost`` names localhost, not 127.0.0.1."""
    named = named_host(pattern)
    if named is None:
        return False
    a, b = ip(named), ip(host)
    if a is not None and b is not None:
        return a == b
    return named.lower() == host.lower()
