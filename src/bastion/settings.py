"""Settings, parsed once at start-up.

Each setting has a command-line flag and a ``BASTION_*`` environment variable; the flag wins,
then the environment, then the default. Secrets are wrapped in :class:`Secret` so they never
appear in a ``repr`` or a log line.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class Secret:
    """A string that hides itself from repr() and str()."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def add_option(
    parser: argparse.ArgumentParser,
    flag: str,
    *,
    env: str,
    default: Any,
    cast: Callable[[str], Any] = str,
    help: str,
) -> None:
    """Declare a flag whose default comes from the environment variable ``env``."""
    value = default
    raw = os.environ.get(env)
    if raw is not None and raw != "":
        try:
            value = cast(raw)
        except ValueError:
            parser.error(f"Environment variable {env} has value {raw!r}. Not a valid {cast.__name__}.")
    parser.add_argument(flag, default=value, type=cast, help=f"{help} [env {env}, default {default!r}]")


@dataclass(frozen=True)
class CollectorSettings:
    host: str = "127.0.0.1"
    port: int = 4318
    data_dir: Path = Path(".bastion/data")
    clickhouse_url: Secret | None = None
    database: str = "bastion"
    batch_rows: int = 10_000
    # Senders wait for the flush that stores their rows, so a short interval keeps each sender's
    # round trip short; under load a flush still carries batch_rows rows or all that arrived.
    flush_interval: float = 0.25
    # Retention, applied at start-up (ALTER TABLE ... MODIFY TTL); 0 keeps rows forever.
    traces_ttl_days: int = 30
    audit_ttl_days: int = 365
    # A ClickHouse cluster name: tables are created ON CLUSTER as Replicated* + Distributed.
    cluster: str = ""
    # Where approvers.yaml (who may decide held calls) and bastion.yaml (approvals webhook) live.
    policies_dir: Path = Path("policies")

    @property
    def dsn(self) -> str:
        if self.clickhouse_url is not None:
            return self.clickhouse_url.get()
        return f"chdb://{self.data_dir.resolve()}"


@dataclass(frozen=True)
class ProxySettings:
    host: str = "127.0.0.1"
    reverse_port: int = 8080
    explicit_port: int = 8081
    policies_dir: Path = Path("policies")
    collector_url: str = "http://127.0.0.1:4318"
    confdir: Path = Path(".bastion/mitmproxy")
    max_body_bytes: int = 10 * 1024 * 1024
    keys_file: Path | None = None  # None: the keys_file named in bastion.yaml
    # Durable outbox for spans and the audit chain. None: "outbox" beside the confdir (so
    # .bastion/outbox by default); "off" sends spans straight to the collector instead.
    outbox_dir: str | None = None
    audit_head_interval: float = 10.0
    # Shared by a deployment's proxy replicas: the key that binds MCP sessions to their agents.
    token: Secret | None = None

    @property
    def outbox_path(self) -> Path | None:
        if self.outbox_dir is None:
            return self.confdir.parent / "outbox"
        return None if self.outbox_dir in ("", "off") else Path(self.outbox_dir)

    @property
    def state_dir(self) -> Path:
        """What the proxy keeps across restarts (the last known suspensions): in its outbox directory,
        or beside the confdir with the outbox off."""
        return self.outbox_path or self.confdir.parent


@dataclass(frozen=True)
class DashboardSettings:
    host: str = "127.0.0.1"
    port: int = 8501
    collector_url: str = "http://127.0.0.1:4318"


def _optional_secret(raw: str) -> Secret | None:
    return Secret(raw) if raw else None


_optional_secret.__name__ = "URL"


def _optional_token(raw: str) -> Secret | None:
    return Secret(raw) if raw else None


_optional_token.__name__ = "token"


def add_collector_options(parser: argparse.ArgumentParser) -> None:
    d = CollectorSettings()
    add_option(
        parser,
        "--collector-host",
        env="BASTION_COLLECTOR_HOST",
        default=d.host,
        help="collector listen address",
    )
    add_option(
        parser,
        "--collector-port",
        env="BASTION_COLLECTOR_PORT",
        default=d.port,
        cast=int,
        help="collector port (OTLP/HTTP and API)",
    )
    add_option(
        parser,
        "--data-dir",
        env="BASTION_DATA_DIR",
        default=d.data_dir,
        cast=Path,
        help="embedded chDB data directory",
    )
    add_option(
        parser,
        "--clickhouse-url",
        env="BASTION_CLICKHOUSE_URL",
        default=None,
        cast=_optional_secret,
        help="ClickHouse server URL; replaces the embedded store",
    )
    add_option(
        parser,
        "--database",
        env="BASTION_DATABASE",
        default=d.database,
        help="ClickHouse database name",
    )
    add_option(
        parser,
        "--batch-rows",
        env="BASTION_BATCH_ROWS",
        default=d.batch_rows,
        cast=int,
        help="rows per insert under load",
    )
    add_option(
        parser,
        "--flush-interval",
        env="BASTION_FLUSH_INTERVAL",
        default=d.flush_interval,
        cast=float,
        help="seconds between flushes at most",
    )
    add_option(
        parser,
        "--traces-ttl-days",
        env="BASTION_TRACES_TTL_DAYS",
        default=d.traces_ttl_days,
        cast=int,
        help="days spans (otel_traces) are kept; 0 forever",
    )
    add_option(
        parser,
        "--audit-ttl-days",
        env="BASTION_AUDIT_TTL_DAYS",
        default=d.audit_ttl_days,
        cast=int,
        help="days decision records and the audit chain are kept; 0 forever",
    )
    add_option(
        parser,
        "--clickhouse-cluster",
        env="BASTION_CLICKHOUSE_CLUSTER",
        default=d.cluster,
        help="ClickHouse cluster name: replicated tables ON CLUSTER behind Distributed ones",
    )


def collector_settings(args: argparse.Namespace) -> CollectorSettings:
    return CollectorSettings(
        host=args.collector_host,
        port=args.collector_port,
        data_dir=args.data_dir,
        clickhouse_url=args.clickhouse_url,
        database=args.database,
        batch_rows=args.batch_rows,
        flush_interval=args.flush_interval,
        policies_dir=getattr(args, "policies", None) or CollectorSettings.policies_dir,
    )


def add_proxy_options(parser: argparse.ArgumentParser) -> None:
    d = ProxySettings()
    add_option(
        parser,
        "--proxy-host",
        env="BASTION_PROXY_HOST",
        default=d.host,
        help="proxy listen address",
    )
    add_option(
        parser,
        "--proxy-port",
        env="BASTION_PROXY_PORT",
        default=d.reverse_port,
        cast=int,
        help="reverse-proxy port (agents' base URL)",
    )
    add_option(
        parser,
        "--explicit-port",
        env="BASTION_EXPLICIT_PORT",
        default=d.explicit_port,
        cast=int,
        help="explicit-proxy port (HTTPS_PROXY)",
    )
    add_option(
        parser,
        "--policies",
        env="BASTION_POLICIES",
        default=d.policies_dir,
        cast=Path,
        help="policies directory",
    )
    add_option(
        parser,
        "--confdir",
        env="BASTION_CONFDIR",
        default=d.confdir,
        cast=Path,
        help="directory of Bastion's CA certificate",
    )
    add_option(
        parser,
        "--max-body-bytes",
        env="BASTION_MAX_BODY_BYTES",
        default=d.max_body_bytes,
        cast=int,
        help="largest request body accepted",
    )
    add_option(
        parser,
        "--outbox-dir",
        env="BASTION_OUTBOX_DIR",
        default=d.outbox_dir,
        help="durable span outbox, one per proxy replica (default: beside the confdir); off: send spans directly",
    )
    add_option(
        parser,
        "--audit-head-interval",
        env="BASTION_AUDIT_HEAD_INTERVAL",
        default=d.audit_head_interval,
        cast=float,
        help="seconds between audit chain head records",
    )
    add_option(
        parser,
        "--proxy-token",
        env="BASTION_PROXY_TOKEN",
        default=None,
        cast=_optional_token,
        help="secret shared by the proxy replicas (binds MCP sessions to agents); default: one per process",
    )
    add_keys_file_option(parser)


def add_keys_file_option(parser: argparse.ArgumentParser) -> None:
    add_option(
        parser,
        "--keys-file",
        env="BASTION_KEYS_FILE",
        default=None,
        cast=Path,
        help="agent keys file; overrides keys_file in bastion.yaml",
    )


def add_collector_url_option(parser: argparse.ArgumentParser) -> None:
    add_option(
        parser,
        "--collector-url",
        env="BASTION_COLLECTOR_URL",
        default=ProxySettings().collector_url,
        help="collector base URL",
    )


def proxy_settings(args: argparse.Namespace) -> ProxySettings:
    return ProxySettings(
        host=args.proxy_host,
        reverse_port=args.proxy_port,
        explicit_port=args.explicit_port,
        policies_dir=args.policies,
        collector_url=args.collector_url,
        confdir=args.confdir,
        max_body_bytes=args.max_body_bytes,
        keys_file=args.keys_file,
        outbox_dir=args.outbox_dir,
        audit_head_interval=args.audit_head_interval,
        token=args.proxy_token,
    )


def add_dashboard_options(parser: argparse.ArgumentParser) -> None:
    d = DashboardSettings()
    add_option(
        parser,
        "--dashboard-host",
        env="BASTION_DASHBOARD_HOST",
        default=d.host,
        help="dashboard listen address",
    )
    add_option(
        parser,
        "--dashboard-port",
        env="BASTION_DASHBOARD_PORT",
        default=d.port,
        cast=int,
        help="dashboard port",
    )


def dashboard_settings(args: argparse.Namespace) -> DashboardSettings:
    return DashboardSettings(
        host=args.dashboard_host,
        port=args.dashboard_port,
        collector_url=args.collector_url,
    )
