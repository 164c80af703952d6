import ipaddress

import pytest

from bastion.proxy.classify import authority
from bastion.proxy.egress import (
    INTERNAL_ADDRESS_RULE,
    OWN_ADDRESS_RULE,
    UNRESOLVABLE_RULE,
    address_refusal,
    category,
    http_prefix,
    named_host,
    names_host,
    tcp_object,
)

OWN = frozenset({(ipaddress.ip_address("203.0.114.10"), 8081)})


@pytest.mark.parametrize(
    ("address", "port", "kind"),
    [
        ("93.184.215.14", 443, None),
        ("2606:4700:4700::1111", 443, None),
        ("127.0.0.1", 80, "loopback"),
        ("127.8.9.10", 80, "loopback"),
        ("::1", 80, "loopback"),
        ("::ffff:127.0.0.1", 80, "loopback"),  # IPv4-mapped
        ("2002:7f00:1::", 80, "loopback"),  # 6to4 around 127.0.0.1
        ("10.1.2.3", 80, "private"),
        ("172.16.0.1", 80, "private"),
        ("192.168.1.1", 80, "private"),
        ("fd12:3456::1", 80, "private"),  # unique local
        ("169.254.169.254", 80, "link-local"),  # cloud metadata
        ("fe80::1", 80, "link-local"),
        ("0.0.0.0", 80, "unspecified"),
        ("::", 80, "unspecified"),
        ("224.0.0.1", 80, "multicast"),
        ("ff02::1", 80, "multicast"),
        ("100.64.0.1", 80, "not globally routable"),  # carrier-grade NAT
        ("192.0.2.1", 80, "private"),  # documentation
        ("203.0.114.10", 8081, "Bastion's own"),
        ("203.0.114.10", 8082, None),
    ],
)
def test_which_addresses_are_refused(address: str, port: int, kind: str | None) -> None:
    found = category(ipaddress.ip_address(address), port, OWN)
    if kind is None:
        assert found is None
    else:
        assert found is not None and kind in found[1]
        assert found[0] == (OWN_ADDRESS_RULE if "own" in kind else INTERNAL_ADDRESS_RULE)


def test_a_name_is_refused_when_any_of_its_addresses_is_internal() -> None:
    assert address_refusal("example.test", 443, ["93.184.215.14"], OWN) is None
    mixed = address_refusal("rebind.test", 443, ["93.184.215.14", "127.0.0.1"], OWN)
    assert mixed is not None and mixed.rule == INTERNAL_ADDRESS_RULE
    assert "rebind.test resolves to 127.0.0.1" in mixed.reason and "http:rebind.test/*" in mixed.reason
    nothing = address_refusal("nowhere.test", 443, [], OWN)
    assert nothing is not None and nothing.rule == UNRESOLVABLE_RULE


@pytest.mark.parametrize(
    ("host", "port", "http", "tcp"),
    [
        ("api.example.com", 443, "http:api.example.com/", "tcp:api.example.com:443"),
        ("api.example.com", 80, "http:api.example.com/", "tcp:api.example.com:80"),
        ("127.0.0.1", 9200, "http:127.0.0.1:9200/", "tcp:127.0.0.1:9200"),
        ("::1", 8080, "http:[::1]:8080/", "tcp:[::1]:8080"),
    ],
)
def test_objects_name_host_and_port(host: str, port: int, http: str, tcp: str) -> None:
    assert (http_prefix(host, port), tcp_object(host, port)) == (http, tcp)
    assert http.startswith(f"http:{authority(host, port)}")


@pytest.mark.parametrize(
    ("pattern", "named"),
    [
        ("http:127.0.0.1:9200/*", "127.0.0.1"),
        ("http:127.0.0.1/*", "127.0.0.1"),
        ("http:localhost:*", "localhost"),
        ("tcp:db.internal:5432", "db.internal"),
        ("http:[[]::1]:8080/*", "::1"),
        ("http:*", None),
        ("http:127.0.0.*:9200/*", None),
        ("http:127.0.0.1*", None),
        ("http:10.0.0.[12]/*", None),
        ("tcp:*:22", None),
        ("model:127.0.0.1", None),
        ("*", None),
    ],
)
def test_named_host(pattern: str, named: str | None) -> None:
    assert named_host(pattern) == named


@pytest.mark.parametrize(
    ("pattern", "host", "names"),
    [
        ("http:127.0.0.1:9200/*", "127.0.0.1", True),
        ("http:LocalHost:9200/*", "localhost", True),
        ("http:[[]0:0::1]:8080/*", "::1", True),
        ("http:localhost:9200/*", "127.0.0.1", False),
        ("http:127.0.0.1:9200/*", "localhost", False),
        ("http:127.0.0.1:9200/*", "127.0.0.2", False),
        ("http:*", "127.0.0.1", False),
    ],
)
def test_names_host(pattern: str, host: str, names: bool) -> None:
    assert names_host(pattern, host) is names
