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
    parser.add_argument(flag, default=value, type=cast, help=f"{help} [env {env}{_shown_default(default)}]")


def _shown_default(default: Any) -> str:
    """How --help shows a default: as the user would type it, and not at all when there is none."""
    if default is None or default == "":
        return ""
    return f", default {default}"


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
    # Where operators.yaml (who may use the API), keys.yaml and bastion.yaml (approvals webhook) live.
    policies_dir: Path = Path("policies")
    # Operators' hashed tokens; None: operators.yaml in the policies directory.
    operators_file: Path | None = None
    # Agent keys, for spans agents export with their key; None: keys.yaml in the policies directory.
    keys_file: Path | None = None
    # The proxies' shared service credential; None: no proxy can send spans or hold calls.
    proxy_token: Secret | None = None
    # Largest body of a JSON API request (OTLP has its own limit).
    max_json_bytes: int = 1024 * 1024
    # The key sealing held calls' clear arguments (collector/sealing.py); None: in the data directory.
    approvals_key_file: Path | None = None

    @property
    def operators_path(self) -> Path:
        return self.operators_file or self.policies_dir / "operators.yaml"

    @property
    def approvals_key_path(self) -> Path:
        return self.approvals_key_file or self.data_dir / "approvals.key"

    @property
    def keys_path(self) -> Path:
        return self.keys_file or self.policies_dir / "keys.yaml"

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
    # The service credential proxies present to the collector (BASTION_PROXY_TOKEN or a file).
    proxy_token: Secret | None = None
    # Prometheus /metrics on its own port (on the proxy's host); None: not served.
    metrics_port: int | None = None
    # Worker processes sharing the listening ports (SO_REUSEPORT); 1: this process serves alone.
    workers: int = 1
    # Which worker this process is, 1 to workers (set by the supervisor through BASTION_PROXY_WORKER,
    # never by hand); 0: a proxy serving alone.
    worker: int = 0

    @property
    def collector_headers(self) -> dict[str, str]:
        """What every request to the collector carries: the proxy credential, when there is one."""
        return collector_headers(self.proxy_token)

    @property
    def outbox_path(self) -> Path | None:
        """The first worker's outbox is the directory itself, worker N's ``worker-N`` inside it: each
        worker is a replica with its own chain instance."""
        if self.outbox_dir in ("", "off"):
            return None
        base = self.confdir.parent / "outbox" if self.outbox_dir is None else Path(self.outbox_dir)
        return base / f"worker-{self.worker}" if self.worker > 1 else base

    @property
    def worker_metrics_port(self) -> int | None:
        """Each worker serves its own /metrics: worker N on ``metrics_port + N - 1``."""
        return None if self.metrics_port is None else self.metrics_port + max(self.worker - 1, 0)

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
    add_operators_file_option(parser)
    add_option(
        parser,
        "--approvals-key-file",
        env="BASTION_APPROVALS_KEY_FILE",
        default=None,
        cast=Path,
        help="key sealing held calls' arguments for approvers (created 0600); default in the data directory",
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
        traces_ttl_days=args.traces_ttl_days,
        audit_ttl_days=args.audit_ttl_days,
        cluster=args.clickhouse_cluster,
        policies_dir=getattr(args, "policies", None) or CollectorSettings.policies_dir,
        operators_file=getattr(args, "operators_file", None),
        approvals_key_file=args.approvals_key_file,
        keys_file=getattr(args, "keys_file", None),
        proxy_token=proxy_token(args),
    )


PROXY_TOKEN_ENV = "BASTION_PROXY_TOKEN"


def add_proxy_token_option(parser: argparse.ArgumentParser) -> None:
    """The proxies' service credential: from BASTION_PROXY_TOKEN (never a flag: command lines are
    visible to every user of the machine) or from a file."""
    add_option(
        parser,
        "--proxy-token-file",
        env="BASTION_PROXY_TOKEN_FILE",
        default=None,
        cast=Path,
        help=f"file holding the proxies' service credential (or set {PROXY_TOKEN_ENV})",
    )


def proxy_token(args: argparse.Namespace) -> Secret | None:
    try:
        return read_proxy_token(os.environ.get(PROXY_TOKEN_ENV, ""), getattr(args, "proxy_token_file", None))
    except ValueError as e:
        raise SystemExit(f"bastion: {e}") from None


MIN_PROXY_TOKEN_LENGTH = 24


def read_proxy_token(value: str, file: Path | None) -> Secret | None:
    """The proxy credential from its value or file; ``ValueError`` naming the problem when weak."""
    if not value and file is not None:
        try:
            value = file.read_text().strip()
        except OSError as e:
            raise ValueError(f"Cannot read the proxy token file {file}: {e.strerror}.") from None
    if not value:
        return None
    if len(value) < MIN_PROXY_TOKEN_LENGTH:
        raise ValueError(f"The proxy token must be at least {MIN_PROXY_TOKEN_LENGTH} characters long.")
    return Secret(value)


def add_operators_file_option(parser: argparse.ArgumentParser) -> None:
    add_option(
        parser,
        "--operators-file",
        env="BASTION_OPERATORS_FILE",
        default=None,
        cast=Path,
        help="operators' hashed tokens; default operators.yaml in the policies directory",
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
        "--metrics-port",
        env="BASTION_METRICS_PORT",
        default=None,
        cast=int,
        help="serve Prometheus /metrics on this port (on the proxy's host, apart from agents' ports); default off",
    )
    add_option(
        parser,
        "--workers",
        env="BASTION_PROXY_WORKERS",
        default=d.workers,
        cast=_workers,
        help="proxy processes sharing the ports (SO_REUSEPORT), each its own replica; auto: one per core, at most 8",
    )
    add_keys_file_option(parser)
    add_proxy_token_option(parser)


MAX_AUTO_WORKERS = 8


def _workers(raw: str) -> int:
    if raw == "auto":
        return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS))
    value = int(raw)
    if value < 1:
        raise ValueError(raw)
    return value


_workers.__name__ = "worker count (a number of at least 1, or auto)"


def add_keys_file_option(parser: argparse.ArgumentParser) -> None:
    add_option(
        parser,
        "--keys-file",
        env="BASTION_KEYS_FILE",
        default=None,
        cast=Path,
        help="agent keys file; overrides keys_file in bastion.yaml",
    )


def default_collector_url() -> str:
    """The collector `bastion up` starts with the same environment: BASTION_COLLECTOR_HOST and
    BASTION_COLLECTOR_PORT when set (a wildcard listen address is reached on loopback)."""
    d = CollectorSettings()
    host = os.environ.get("BASTION_COLLECTOR_HOST", "").strip() or d.host
    port = os.environ.get("BASTION_COLLECTOR_PORT", "").strip()
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port if port.isdigit() else d.port}"


def add_collector_url_option(parser: argparse.ArgumentParser) -> None:
    add_option(
        parser,
        "--collector-url",
        env="BASTION_COLLECTOR_URL",
        default=default_collector_url(),
        help="collector base URL",
    )


# An operator's token for the collector API; the second name is the one earlier versions read.
TOKEN_ENVS = ("BASTION_TOKEN", "BASTION_APPROVER_TOKEN")


def add_token_option(parser: argparse.ArgumentParser) -> None:
    """An operator token for commands that call the collector API: BASTION_TOKEN or a file."""
    add_option(
        parser,
        "--token-file",
        env="BASTION_TOKEN_FILE",
        default=None,
        cast=Path,
        help="file holding your operator token (or set BASTION_TOKEN)",
    )


def operator_token(args: argparse.Namespace) -> Secret | None:
    """The operator token from BASTION_TOKEN (or BASTION_APPROVER_TOKEN), else --token-file."""
    for env in TOKEN_ENVS:
        if value := os.environ.get(env, "").strip():
            return Secret(value)
    file: Path | None = getattr(args, "token_file", None)
    if file is None:
        return None
    try:
        return Secret(file.read_text().strip())
    except OSError as e:
        raise SystemExit(f"bastion: cannot read the token file {file}: {e.strerror}") from None


def collector_headers(token: Secret | None) -> dict[str, str]:
    return {} if token is None else {"authorization": f"Bearer {token.get()}"}


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
        proxy_token=proxy_token(args),
        metrics_port=args.metrics_port,
        workers=args.workers,
        worker=int(os.environ.get(WORKER_ENV) or 0),
    )


# The supervisor (proxy/workers.py) tells each worker process which one it is.
WORKER_ENV = "BASTION_PROXY_WORKER"


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
