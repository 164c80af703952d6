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


# The parts of Bastion a setting is for. `bastion up` starts the first three as children.
COLLECTOR, PROXY, DASHBOARD = "collector", "proxy", "dashboard"
CHILDREN = (COLLECTOR, PROXY, DASHBOARD)
UP = "up"  # `bastion up` itself (the demo's servers)
CLIENT = "client"  # commands that call the collector API (approvals, agents, audit, ...)
FILES = "files"  # commands that edit or check the policies folder (keys, policy, lists, operators)


@dataclass(frozen=True)
class Setting[T]:
    """One setting, declared once: its flag (None: environment only), environment variable, type
    (``cast`` from text), default, help, the parts that use it, and whether it is a secret (a secret
    reaches `bastion up`'s children through the environment, never their command line)."""

    name: str  # the attribute on parsed arguments
    flag: str | None
    env: str
    default: T
    cast: Callable[[str], T]
    help: str
    parts: tuple[str, ...]
    secret: bool = False
    # `bastion up` does not take it: it computes the value for its children (the collector's URL).
    computed_by_up: bool = False


def _optional_secret(raw: str) -> Secret | None:
    return Secret(raw) if raw else None


_optional_secret.__name__ = "URL"


def _optional_path(raw: str) -> Path | None:
    return Path(raw) if raw else None


_optional_path.__name__ = "path"


def _optional_int(raw: str) -> int | None:
    return int(raw) if raw else None


_optional_int.__name__ = "int"


def _optional_str(raw: str) -> str | None:
    return raw or None


_optional_str.__name__ = "str"


def default_collector_url() -> str:
    """The collector `bastion up` starts with the same environment: BASTION_COLLECTOR_HOST and
    BASTION_COLLECTOR_PORT when set (a wildcard listen address is reached on loopback)."""
    host = os.environ.get(COLLECTOR_HOST.env, "").strip() or COLLECTOR_HOST.default
    port = os.environ.get(COLLECTOR_PORT.env, "").strip()
    return collector_url(host, int(port) if port.isdigit() else COLLECTOR_PORT.default)


def collector_url(host: str, port: int) -> str:
    """The URL of a collector listening on ``host``:``port`` (a wildcard address on loopback)."""
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


PROXY_TOKEN_ENV = "BASTION_PROXY_TOKEN"
BOTH = (COLLECTOR, PROXY)

COLLECTOR_HOST = Setting(
    "collector_host",
    "--collector-host",
    "BASTION_COLLECTOR_HOST",
    "127.0.0.1",
    str,
    "collector listen address",
    (COLLECTOR,),
)
COLLECTOR_PORT = Setting(
    "collector_port",
    "--collector-port",
    "BASTION_COLLECTOR_PORT",
    4318,
    int,
    "collector port (OTLP/HTTP and API)",
    (COLLECTOR,),
)
DATA_DIR = Setting(
    "data_dir",
    "--data-dir",
    "BASTION_DATA_DIR",
    Path(".bastion/data"),
    Path,
    "embedded chDB data directory",
    (COLLECTOR,),
)
CLICKHOUSE_URL = Setting(
    "clickhouse_url",
    "--clickhouse-url",
    "BASTION_CLICKHOUSE_URL",
    None,
    _optional_secret,
    "ClickHouse server URL; replaces the embedded store",
    (COLLECTOR,),
    secret=True,
)
DATABASE = Setting(
    "database", "--database", "BASTION_DATABASE", "bastion", str, "ClickHouse database name", (COLLECTOR, FILES)
)
BATCH_ROWS = Setting(
    "batch_rows", "--batch-rows", "BASTION_BATCH_ROWS", 10_000, int, "rows per insert under load", (COLLECTOR,)
)
FLUSH_INTERVAL = Setting(
    "flush_interval",
    "--flush-interval",
    "BASTION_FLUSH_INTERVAL",
    0.25,
    float,
    "seconds between flushes at most",
    (COLLECTOR,),
)
TRACES_TTL_DAYS = Setting(
    "traces_ttl_days",
    "--traces-ttl-days",
    "BASTION_TRACES_TTL_DAYS",
    30,
    int,
    "days spans (otel_traces) are kept; 0 forever",
    (COLLECTOR,),
)
AUDIT_TTL_DAYS = Setting(
    "audit_ttl_days",
    "--audit-ttl-days",
    "BASTION_AUDIT_TTL_DAYS",
    365,
    int,
    "days decision records and the audit chain are kept; 0 forever",
    (COLLECTOR,),
)
CLICKHOUSE_CLUSTER = Setting(
    "clickhouse_cluster",
    "--clickhouse-cluster",
    "BASTION_CLICKHOUSE_CLUSTER",
    "",
    str,
    "ClickHouse cluster name: replicated tables ON CLUSTER behind Distributed ones",
    (COLLECTOR, FILES),
)
OPERATORS_FILE = Setting(
    "operators_file",
    "--operators-file",
    "BASTION_OPERATORS_FILE",
    None,
    _optional_path,
    "operators' hashed tokens; default operators.yaml in the policies directory",
    (COLLECTOR, FILES),
)
APPROVALS_KEY_FILE = Setting(
    "approvals_key_file",
    "--approvals-key-file",
    "BASTION_APPROVALS_KEY_FILE",
    None,
    _optional_path,
    "key sealing held calls' arguments for approvers (created 0600); default in the data directory",
    (COLLECTOR,),
)
POLICIES = Setting(
    "policies",
    "--policies",
    "BASTION_POLICIES",
    Path("policies"),
    Path,
    "policies directory (bastion.yaml, policy.csv, keys.yaml, operators.yaml, pii.yaml)",
    (COLLECTOR, PROXY, FILES),
)
KEYS_FILE = Setting(
    "keys_file",
    "--keys-file",
    "BASTION_KEYS_FILE",
    None,
    _optional_path,
    "agent keys file; overrides keys_file in bastion.yaml",
    (COLLECTOR, PROXY, FILES),
)
PROXY_TOKEN_FILE = Setting(
    "proxy_token_file",
    "--proxy-token-file",
    "BASTION_PROXY_TOKEN_FILE",
    None,
    _optional_path,
    f"file holding the proxies' service credential (or set {PROXY_TOKEN_ENV})",
    BOTH,
)
# Never a flag: command lines are visible to every user of the machine.
PROXY_TOKEN = Setting(
    "proxy_token",
    None,
    PROXY_TOKEN_ENV,
    None,
    _optional_secret,
    "the proxies' service credential (at least 24 characters)",
    BOTH,
    secret=True,
)
PROXY_HOST = Setting(
    "proxy_host", "--proxy-host", "BASTION_PROXY_HOST", "127.0.0.1", str, "proxy listen address", (PROXY,)
)
PROXY_PORT = Setting(
    "proxy_port", "--proxy-port", "BASTION_PROXY_PORT", 8080, int, "reverse-proxy port (agents' base URL)", (PROXY,)
)
EXPLICIT_PORT = Setting(
    "explicit_port",
    "--explicit-port",
    "BASTION_EXPLICIT_PORT",
    8081,
    int,
    "explicit-proxy port (HTTPS_PROXY)",
    (PROXY,),
)
CONFDIR = Setting(
    "confdir",
    "--confdir",
    "BASTION_CONFDIR",
    Path(".bastion/mitmproxy"),
    Path,
    "directory of Bastion's CA certificate",
    (PROXY,),
)
MAX_BODY_BYTES = Setting(
    "max_body_bytes",
    "--max-body-bytes",
    "BASTION_MAX_BODY_BYTES",
    10 * 1024 * 1024,
    int,
    "largest request body accepted",
    (PROXY,),
)
# None: "outbox" beside the confdir (.bastion/outbox by default); "off" sends spans straight to the collector.
OUTBOX_DIR = Setting(
    "outbox_dir",
    "--outbox-dir",
    "BASTION_OUTBOX_DIR",
    None,
    _optional_str,
    "durable span outbox, one per proxy replica (default: beside the confdir); off: send spans directly",
    (PROXY,),
)
AUDIT_HEAD_INTERVAL = Setting(
    "audit_head_interval",
    "--audit-head-interval",
    "BASTION_AUDIT_HEAD_INTERVAL",
    10.0,
    float,
    "seconds between audit chain head records",
    (PROXY,),
)
METRICS_PORT = Setting(
    "metrics_port",
    "--metrics-port",
    "BASTION_METRICS_PORT",
    None,
    _optional_int,
    "serve Prometheus /metrics on this port (on the proxy's host, apart from agents' ports); default off",
    (PROXY,),
)


MAX_AUTO_WORKERS = 8


def _workers(raw: str) -> int:
    if raw == "auto":
        return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS))
    value = int(raw)
    if value < 1:
        raise ValueError(raw)
    return value


_workers.__name__ = "worker count (a number of at least 1, or auto)"

WORKERS = Setting(
    "workers",
    "--workers",
    "BASTION_PROXY_WORKERS",
    1,
    _workers,
    "proxy processes sharing the ports (SO_REUSEPORT), each its own replica; auto: one per core, at most 8",
    (PROXY,),
)
# The supervisor (proxy/workers.py) tells each worker process which one it is; never set by hand.
WORKER_ENV = "BASTION_PROXY_WORKER"
COLLECTOR_URL = Setting(
    "collector_url",
    "--collector-url",
    "BASTION_COLLECTOR_URL",
    "http://127.0.0.1:4318",
    str,
    "collector base URL (default: the one --collector-host and --collector-port name)",
    (PROXY, DASHBOARD, CLIENT),
    computed_by_up=True,
)
TOKEN_FILE = Setting(
    "token_file",
    "--token-file",
    "BASTION_TOKEN_FILE",
    None,
    _optional_path,
    "file holding your operator token (or set BASTION_TOKEN)",
    (CLIENT,),
)
DASHBOARD_HOST = Setting(
    "dashboard_host",
    "--dashboard-host",
    "BASTION_DASHBOARD_HOST",
    "127.0.0.1",
    str,
    "dashboard listen address",
    (DASHBOARD,),
)
DASHBOARD_PORT = Setting(
    "dashboard_port", "--dashboard-port", "BASTION_DASHBOARD_PORT", 8501, int, "dashboard port", (DASHBOARD,)
)
SCRIPTED_MODEL_PORT = Setting(
    "scripted_model_port",
    "--scripted-model-port",
    "BASTION_SCRIPTED_MODEL_PORT",
    9100,
    int,
    "scripted model port (with --demo)",
    (UP,),
)
TOOL_SERVER_PORT = Setting(
    "tool_server_port",
    "--tool-server-port",
    "BASTION_TOOL_SERVER_PORT",
    9200,
    int,
    "demo MCP tool server port (with --demo)",
    (UP,),
)

SETTINGS: tuple[Setting[Any], ...] = (
    COLLECTOR_HOST, COLLECTOR_PORT, DATA_DIR, CLICKHOUSE_URL, DATABASE, BATCH_ROWS, FLUSH_INTERVAL,
    TRACES_TTL_DAYS, AUDIT_TTL_DAYS, CLICKHOUSE_CLUSTER, OPERATORS_FILE, APPROVALS_KEY_FILE, POLICIES,
    KEYS_FILE, PROXY_TOKEN_FILE, PROXY_TOKEN, PROXY_HOST, PROXY_PORT, EXPLICIT_PORT, CONFDIR, MAX_BODY_BYTES,
    OUTBOX_DIR, AUDIT_HEAD_INTERVAL, METRICS_PORT, WORKERS, COLLECTOR_URL, TOKEN_FILE, DASHBOARD_HOST, DASHBOARD_PORT,
    SCRIPTED_MODEL_PORT, TOOL_SERVER_PORT,
)  # fmt: skip


def for_part(part: str) -> list[Setting[Any]]:
    return [setting for setting in SETTINGS if part in setting.parts]


def up_settings() -> list[Setting[Any]]:
    """What `bastion up` takes: every child's settings it does not compute, and its own."""
    return [t for t in SETTINGS if (UP in t.parts or set(t.parts) & set(CHILDREN)) and not t.computed_by_up]


def add_setting(parser: argparse.ArgumentParser, setting: Setting[Any]) -> None:
    """The setting's flag on ``parser`` (its default from the environment); an environment-only
    setting gets no flag and is read by :func:`value`."""
    if setting.flag is None:
        return
    default: Any = setting.default
    if setting is COLLECTOR_URL:
        default = default_collector_url()
    add_option(parser, setting.flag, env=setting.env, default=default, cast=setting.cast, help=setting.help)


def add_settings(parser: argparse.ArgumentParser, *settings: Setting[Any]) -> None:
    for setting in settings:
        add_setting(parser, setting)


def add_part(parser: argparse.ArgumentParser, part: str) -> None:
    """Every setting of ``part`` on ``parser``."""
    add_settings(parser, *for_part(part))


def value[T](args: argparse.Namespace, setting: Setting[T]) -> T:
    """The setting's value: from the parsed flag, or (environment-only settings) the environment."""
    if setting.flag is not None and hasattr(args, setting.name):
        found: T = getattr(args, setting.name)
        return found
    raw = os.environ.get(setting.env, "")
    return setting.cast(raw) if raw else setting.default


def _text(value: Any) -> str:
    return value.get() if isinstance(value, Secret) else str(value)


def child_command(
    args: argparse.Namespace, part: str, overrides: dict[str, Any] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The arguments and environment `bastion up` gives the child running ``part``: every setting
    of that part, from `up`'s own parsed ``args`` or ``overrides`` (by name); secrets in the
    environment only. A value left unset (None) is not passed: the child's default applies."""
    overrides = overrides or {}
    argv: list[str] = []
    env: dict[str, str] = {}
    for setting in for_part(part):
        found = overrides[setting.name] if setting.name in overrides else value(args, setting)
        if found is None:
            continue
        if setting.secret or setting.flag is None:
            env[setting.env] = _text(found)
        else:
            argv += [setting.flag, _text(found)]
    return argv, env


def settings_table() -> str:
    """The settings as a Markdown table (docs/settings.md holds it; a test keeps them equal)."""
    rows = [
        "| Flag | Environment | Default | Used by | Help |",
        "|---|---|---|---|---|",
    ]
    for t in SETTINGS:
        flag = f"`{t.flag}`" if t.flag else "(environment only)"
        default = "" if t.default in (None, "") else f"`{t.default}`"
        used = ", ".join(t.parts) + (" (up computes it)" if t.computed_by_up else "")
        secret = " Secret: passed by environment only, never shown." if t.secret else ""
        rows.append(f"| {flag} | `{t.env}` | {default} | {used} | {t.help}.{secret} |")
    return "\n".join(rows) + "\n"


@dataclass(frozen=True)
class CollectorSettings:
    host: str = COLLECTOR_HOST.default
    port: int = COLLECTOR_PORT.default
    data_dir: Path = DATA_DIR.default
    clickhouse_url: Secret | None = CLICKHOUSE_URL.default
    database: str = DATABASE.default
    batch_rows: int = BATCH_ROWS.default
    # Senders wait for the flush that stores their rows, so a short interval keeps each sender's
    # round trip short; under load a flush still carries batch_rows rows or all that arrived.
    flush_interval: float = FLUSH_INTERVAL.default
    # Retention, applied at start-up (ALTER TABLE ... MODIFY TTL); 0 keeps rows forever.
    traces_ttl_days: int = TRACES_TTL_DAYS.default
    audit_ttl_days: int = AUDIT_TTL_DAYS.default
    # A ClickHouse cluster name: tables are created ON CLUSTER as Replicated* + Distributed.
    cluster: str = CLICKHOUSE_CLUSTER.default
    # Where operators.yaml (who may use the API), keys.yaml and bastion.yaml (approvals webhook) live.
    policies_dir: Path = POLICIES.default
    # Operators' hashed tokens; None: operators.yaml in the policies directory.
    operators_file: Path | None = OPERATORS_FILE.default
    # Agent keys, for spans agents export with their key; None: keys.yaml in the policies directory.
    keys_file: Path | None = KEYS_FILE.default
    # The proxies' shared service credential; None: no proxy can send spans or hold calls.
    proxy_token: Secret | None = None
    # Largest body of a JSON API request (OTLP has its own limit).
    max_json_bytes: int = 1024 * 1024
    # The key sealing held calls' clear arguments (collector/sealing.py); None: in the data directory.
    approvals_key_file: Path | None = APPROVALS_KEY_FILE.default

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
    host: str = PROXY_HOST.default
    reverse_port: int = PROXY_PORT.default
    explicit_port: int = EXPLICIT_PORT.default
    policies_dir: Path = POLICIES.default
    collector_url: str = COLLECTOR_URL.default
    confdir: Path = CONFDIR.default
    max_body_bytes: int = MAX_BODY_BYTES.default
    keys_file: Path | None = KEYS_FILE.default  # None: the keys_file named in bastion.yaml
    outbox_dir: str | None = OUTBOX_DIR.default
    audit_head_interval: float = AUDIT_HEAD_INTERVAL.default
    # The service credential proxies present to the collector (BASTION_PROXY_TOKEN or a file).
    proxy_token: Secret | None = None
    # Prometheus /metrics on its own port (on the proxy's host); None: not served.
    metrics_port: int | None = METRICS_PORT.default
    # Worker processes sharing the listening ports (SO_REUSEPORT); 1: this process serves alone.
    workers: int = WORKERS.default
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
    host: str = DASHBOARD_HOST.default
    port: int = DASHBOARD_PORT.default
    collector_url: str = COLLECTOR_URL.default


def collector_settings(args: argparse.Namespace) -> CollectorSettings:
    return CollectorSettings(
        host=value(args, COLLECTOR_HOST),
        port=value(args, COLLECTOR_PORT),
        data_dir=value(args, DATA_DIR),
        clickhouse_url=value(args, CLICKHOUSE_URL),
        database=value(args, DATABASE),
        batch_rows=value(args, BATCH_ROWS),
        flush_interval=value(args, FLUSH_INTERVAL),
        traces_ttl_days=value(args, TRACES_TTL_DAYS),
        audit_ttl_days=value(args, AUDIT_TTL_DAYS),
        cluster=value(args, CLICKHOUSE_CLUSTER),
        policies_dir=value(args, POLICIES),
        operators_file=value(args, OPERATORS_FILE),
        approvals_key_file=value(args, APPROVALS_KEY_FILE),
        keys_file=value(args, KEYS_FILE),
        proxy_token=proxy_token(args),
    )


def proxy_token(args: argparse.Namespace) -> Secret | None:
    try:
        env = value(args, PROXY_TOKEN)
        return read_proxy_token(env.get() if env else "", value(args, PROXY_TOKEN_FILE))
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


# An operator's token for the collector API; the second name is the one earlier versions read.
TOKEN_ENVS = ("BASTION_TOKEN", "BASTION_APPROVER_TOKEN")


def operator_token(args: argparse.Namespace) -> Secret | None:
    """The operator token from BASTION_TOKEN (or BASTION_APPROVER_TOKEN), else --token-file."""
    for env in TOKEN_ENVS:
        if found := os.environ.get(env, "").strip():
            return Secret(found)
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
        host=value(args, PROXY_HOST),
        reverse_port=value(args, PROXY_PORT),
        explicit_port=value(args, EXPLICIT_PORT),
        policies_dir=value(args, POLICIES),
        collector_url=value(args, COLLECTOR_URL),
        confdir=value(args, CONFDIR),
        max_body_bytes=value(args, MAX_BODY_BYTES),
        keys_file=value(args, KEYS_FILE),
        outbox_dir=value(args, OUTBOX_DIR),
        audit_head_interval=value(args, AUDIT_HEAD_INTERVAL),
        proxy_token=proxy_token(args),
        metrics_port=value(args, METRICS_PORT),
        workers=value(args, WORKERS),
        worker=int(os.environ.get(WORKER_ENV) or 0),
    )


def dashboard_settings(args: argparse.Namespace) -> DashboardSettings:
    return DashboardSettings(
        host=value(args, DASHBOARD_HOST),
        port=value(args, DASHBOARD_PORT),
        collector_url=value(args, COLLECTOR_URL),
    )


if __name__ == "__main__":  # python -m bastion.settings > the table in docs/settings.md
    print(settings_table(), end="")
