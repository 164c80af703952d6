"""Bastion's gateway configuration (``policies/bastion.yaml``), parsed once into typed values."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bastion.files import ConfigError as ConfigError
from bastion.files import expand_env as expand_env
from bastion.files import read_bastion_yaml
from bastion.proxy import limits
from bastion.proxy.formats import FORMATS
from bastion.proxy.limits import LimitSettings
from bastion.proxy.provenance import Trust
from bastion.settings import Secret

# A route's provider: one whose API formats Bastion reads (proxy/formats/), or plain HTTP.
HTTP_PROVIDER = "http"
PROVIDERS = (*dict.fromkeys(fmt.provider for fmt in FORMATS), HTTP_PROVIDER)
# MCP servers are served at /mcp/<name>; their routes carry this provider.
MCP_PROVIDER = "mcp"
MCP_MOUNT = "/mcp/"
_MCP_SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Upstream:
    scheme: str
    host: str
    port: int
    base_path: str  # always ends with "/"

    @classmethod
    def parse(cls, url: str) -> Upstream:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        return cls(parts.scheme, parts.hostname, port, path)

    @property
    def authority(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Route:
    name: str
    prefix: str
    provider: str
    upstream: Upstream
    hosts: tuple[str, ...]
    api_key_env: str | None
    api_key: Secret | None

    @property
    def plain_http(self) -> bool:
        """A route to plain HTTP tools (no model API, no MCP): its calls are decided on method and URL."""
        return self.provider == HTTP_PROVIDER

    def upstream_path(self, path: str) -> str:
        """The upstream path for a reverse-proxied ``path`` under this route's prefix."""
        return self.upstream.base_path + path[len(self.prefix) :]


@dataclass(frozen=True)
class McpServer:
    """An MCP server, served at ``/mcp/<name>`` and forwarded to its URL's exact path (no redirects)."""

    name: str
    path: str  # the upstream endpoint's exact path, with the URL's query if any
    route: Route

    def upstream_path(self, query: str) -> str:
        """The upstream path for a request that came with ``query`` (may be empty)."""
        if not query:
            return self.path
        return f"{self.path}{'&' if '?' in self.path else '?'}{query}"


# What happens to a response whose model called a tool the policy refuses: the call is replaced
# by an explanation the agent reads, or the whole response becomes an error.
TOOL_CALLS_ON_DENY = ("replace", "block")


MCP_REFUSALS = ("tool_result", "jsonrpc_error")


@dataclass(frozen=True)
class ToolCallSettings:
    """``tool_calls`` in bastion.yaml."""

    on_deny: str = "replace"

    @property
    def block(self) -> bool:
        return self.on_deny == "block"


@dataclass(frozen=True)
class GatewayConfig:
    routes: tuple[Route, ...]
    keys_file: Path
    mcp_servers: tuple[McpServer, ...] = ()
    tool_calls: ToolCallSettings = ToolCallSettings()
    # How a refused MCP tools/call is answered: a tool result with isError (the model reads why), or
    # a JSON-RPC error (mcp 1.x Python clients raise it).
    mcp_refusals: str = "tool_result"
    # The limits: section (proxy/limits.py); no limit unless configured.
    limits: LimitSettings = field(default_factory=LimitSettings)
    # Which tools' results provenance trusts (``provenance.trusted_tools``); every other's is untrusted.
    provenance: Trust = field(default_factory=Trust)

    def mcp_server(self, name: str) -> McpServer | None:
        return next((s for s in self.mcp_servers if s.name == name), None)

    def route_for_path(self, path: str) -> Route | None:
        return next((r for r in self.routes if path.startswith(r.prefix)), None)

    def route_for_host(self, host: str) -> Route | None:
        return next((r for r in self.routes if host in r.hosts), None)


class LiveConfig:
    """The gateway configuration in force. The proxy swaps it whole when bastion.yaml changes
    (``bastion/reload.py``), so the addons that route read ``current`` on every call."""

    def __init__(self, config: GatewayConfig) -> None:
        self.current = config


def live(config: GatewayConfig | LiveConfig) -> LiveConfig:
    """``config`` as a LiveConfig (a fixed configuration never changes)."""
    return config if isinstance(config, LiveConfig) else LiveConfig(config)


def load_shadow_rules(policies_dir: Path) -> list[str]:
    """Names of the rules in shadow mode: decided and recorded, but not enforced."""
    path, raw = read_bastion_yaml(policies_dir, expand=False, missing_ok=True)
    rules = raw.get("shadow_rules") or [] if isinstance(raw, dict) else []
    if not isinstance(rules, list):
        raise ConfigError(f"{path}: shadow_rules must be a list of rule names")
    return [str(r) for r in rules]


def load(policies_dir: Path, keys_file: Path | None = None) -> GatewayConfig:
    path, raw = read_bastion_yaml(policies_dir)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    routes = tuple(_route(path, i, r) for i, r in enumerate(raw.get("routes") or []))
    names = [r.name for r in routes]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: route names must be unique, got {names}")
    for i, r in enumerate(routes):
        if r.prefix.startswith(MCP_MOUNT):
            raise ConfigError(
                f"{path}: routes[{i}]: prefix {r.prefix!r} is reserved for mcp_servers ({MCP_MOUNT}<name>)"
            )
    raw_servers = raw.get("mcp_servers") or []
    if not isinstance(raw_servers, list):
        raise ConfigError(f"{path}: mcp_servers must be a list of mappings with name and url")
    servers = tuple(_mcp_server(path, i, s) for i, s in enumerate(raw_servers))
    server_names = [s.name for s in servers]
    if len(set(server_names)) != len(server_names):
        raise ConfigError(f"{path}: mcp_servers names must be unique, got {server_names}")
    keys = keys_file or policies_dir / str(raw.get("keys_file", "keys.yaml"))
    tool_calls = _tool_calls(path, raw.get("tool_calls"))
    refusals = raw.get("mcp_refusals", MCP_REFUSALS[0])
    if refusals not in MCP_REFUSALS:
        raise ConfigError(f"{path}: mcp_refusals has value {refusals!r}. Not one of {' or '.join(MCP_REFUSALS)}.")
    return GatewayConfig(
        routes=routes,
        keys_file=keys,
        mcp_servers=servers,
        tool_calls=tool_calls,
        mcp_refusals=refusals,
        limits=limits.parse(path, raw.get("limits")),
        provenance=_provenance(path, raw.get("provenance")),
    )


def _provenance(path: Path, raw: Any) -> Trust:
    if raw is None:
        return Trust()
    if not isinstance(raw, dict) or sorted(set(raw) - {"trusted_tools"}):
        raise ConfigError(
            f"{path}: provenance must be a mapping whose only key is trusted_tools (a list of tool names)"
        )
    tools = raw.get("trusted_tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, str) and t for t in tools):
        raise ConfigError(f"{path}: provenance.trusted_tools has value {tools!r}. Not a list of tool names.")
    return Trust(tuple(tools))


def _tool_calls(path: Path, raw: Any) -> ToolCallSettings:
    if raw is None:
        return ToolCallSettings()
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: tool_calls must be a mapping, e.g. {{on_deny: replace}}")
    unknown = sorted(set(raw) - {"on_deny"})
    if unknown:
        raise ConfigError(f"{path}: tool_calls has unknown keys {unknown}; the only key is on_deny")
    on_deny = raw.get("on_deny", "replace")
    if on_deny not in TOOL_CALLS_ON_DENY:
        choices = " or ".join(TOOL_CALLS_ON_DENY)
        raise ConfigError(f"{path}: tool_calls.on_deny has value {on_deny!r}. Not one of {choices}.")
    return ToolCallSettings(on_deny)


def _mcp_server(path: Path, index: int, raw: Any) -> McpServer:
    where = f"{path}: mcp_servers[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with name and url")
    try:
        name, url = str(raw["name"]), str(raw["url"])
    except KeyError as e:
        raise ConfigError(f"{where}: missing key {e.args[0]!r}") from None
    key_env = raw.get("api_key_env")
    try:
        return mcp_server(name, url, str(key_env) if key_env else None)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def mcp_server(name: str, url: str, api_key_env: str | None = None) -> McpServer:
    """An MCP server served at ``/mcp/<name>``; raises ValueError naming what is wrong."""
    if not _MCP_SERVER_NAME.fullmatch(name):
        raise ValueError(f"name {name!r} must be letters, digits, '.', '_' or '-' (it becomes a URL path)")
    try:
        upstream = Upstream.parse(url)
    except ValueError as e:
        raise ValueError(f"url {e}") from None
    parts = urlsplit(url)
    exact = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key_value = os.environ.get(api_key_env) if api_key_env else None
    route = Route(
        name=f"{MCP_PROVIDER}:{name}",
        prefix=f"{MCP_MOUNT}{name}",
        provider=MCP_PROVIDER,
        upstream=upstream,
        hosts=(),
        api_key_env=api_key_env,
        api_key=Secret(key_value) if key_value else None,
    )
    return McpServer(name=name, path=exact, route=route)


def _route(path: Path, index: int, raw: Any) -> Route:
    where = f"{path}: routes[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    try:
        name, prefix, upstream_url = str(raw["name"]), str(raw["prefix"]), str(raw["upstream"])
    except KeyError as e:
        raise ConfigError(f"{where}: missing key {e.args[0]!r}") from None
    provider = str(raw.get("provider", "http"))
    if provider not in PROVIDERS:
        raise ConfigError(f"{where}: provider {provider!r} is not one of {PROVIDERS}")
    if not (prefix.startswith("/") and prefix.endswith("/")):
        raise ConfigError(f"{where}: prefix {prefix!r} must start and end with '/'")
    try:
        upstream = Upstream.parse(upstream_url)
    except ValueError as e:
        raise ConfigError(f"{where}: upstream {e}") from None
    # One variable, or several tried in order (Gemini's SDKs read GEMINI_API_KEY, then GOOGLE_API_KEY).
    key_env = raw.get("api_key_env")
    names = [str(n) for n in (key_env if isinstance(key_env, list) else [key_env]) if n]
    key_value = next((value for n in names if (value := os.environ.get(n))), None)
    return Route(
        name=name,
        prefix=prefix,
        provider=provider,
        upstream=upstream,
        hosts=tuple(str(h) for h in raw.get("hosts") or ()),
        api_key_env=" or ".join(names) if names else None,
        api_key=Secret(key_value) if key_value else None,
    )
