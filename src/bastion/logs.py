"""Logging for every Bastion process: quiet by default (warnings), text or JSON lines.

``--log-level`` / ``BASTION_LOG_LEVEL`` and ``--log-format`` / ``BASTION_LOG_FORMAT`` are declared on
every command; `bastion up` passes them to its children through the environment.
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime

from bastion import settings as s

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
LEVEL_ENV = "BASTION_LOG_LEVEL"
FORMAT_ENV = "BASTION_LOG_FORMAT"
# Libraries that log every request at INFO: shown only at debug.
_CHATTY = ("httpx", "httpcore", "mitmproxy", "urllib3", "presidio-analyzer", "watchdog")


def _level(raw: str) -> str:
    if raw.lower() not in LEVELS:
        raise ValueError(raw)
    return raw.lower()


def _format(raw: str) -> str:
    if raw.lower() not in FORMATS:
        raise ValueError(raw)
    return raw.lower()


_level.__name__ = "log level (" + ", ".join(LEVELS) + ")"
_format.__name__ = "log format (" + ", ".join(FORMATS) + ")"


def add_options(parser: argparse.ArgumentParser) -> None:
    s.add_option(
        parser,
        "--log-level",
        env=LEVEL_ENV,
        default="warning",
        cast=_level,
        help="least severe log records shown: " + ", ".join(LEVELS),
    )
    s.add_option(
        parser,
        "--log-format",
        env=FORMAT_ENV,
        default="text",
        cast=_format,
        help="text, or json: one JSON object per line (time, level, logger, message)",
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(level: str = "warning", fmt: str = "text") -> None:
    """Set up the root logger once per process (replacing earlier handlers)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
