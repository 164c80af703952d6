"""Small file helpers for the files users and commands edit under policies/."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

Stamp = tuple[int, int] | None
_ENV_REFERENCE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file and the key."""


def expand_env(text: str, environ: dict[str, str] | None = None) -> str:
    """Expand ``${NAME}`` and ``${NAME:-default}`` references."""
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        value = env.get(match.group(1))
        if value:
            return value
        if match.group(2) is not None:
            return match.group(2)
        raise ConfigError(f"environment variable {match.group(1)} is referenced but not set")

    return _ENV_REFERENCE.sub(substitute, text)


BASTION_YAML = "bastion.yaml"


def read_bastion_yaml(policies_dir: Path, *, expand: bool = True, missing_ok: bool = False) -> tuple[Path, Any]:
    """``policies/bastion.yaml`` parsed (every module that reads a section of it comes here): its
    path and its top-level value, with ``${NAME}`` references expanded unless ``expand`` is off.
    ConfigError naming the file when it cannot be read or parsed; a missing file is ``{}`` when
    ``missing_ok``."""
    path = policies_dir / BASTION_YAML
    try:
        text = path.read_text()
    except FileNotFoundError as e:
        if missing_ok:
            return path, {}
        raise ConfigError(f"{path}: {e}") from e
    except OSError as e:
        raise ConfigError(f"{path}: {e}") from e
    try:
        return path, yaml.safe_load(expand_env(text) if expand else text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: {e}") from e


def stamp(path: Path) -> Stamp:
    """``(mtime in ns, size)`` of ``path``, or None when it is missing or unreadable: the basis of
    every hot reload."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def replace_text(path: Path, text: str) -> None:
    """Write ``path`` so that readers see the old content or the new, never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
