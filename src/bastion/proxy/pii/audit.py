"""The redaction used for anything stored for audit: every configured type becomes ``<TYPE>``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bastion.proxy.pii.bodies import walk

log = logging.getLogger(__name__)
_redact_text: Callable[[str], str] | None = None
WITHHELD = "<withheld: Bastion could not redact this value>"


def install(redact_text: Callable[[str], str] | None) -> None:
    """Set (or clear) the text redaction :func:`redact` applies; the Redaction addon installs it."""
    global _redact_text
    _redact_text = redact_text


def installed() -> bool:
    return _redact_text is not None


def redact(value: Any) -> Any:
    """``value`` with every string in it redacted (all strings, whatever their key)."""
    text = _redact_text
    if text is None:
        return value
    try:
        return walk(value, text, None, True)
    except Exception:  # fail closed: a value that cannot be redacted is not stored
        log.exception("could not redact a value for audit")
        return WITHHELD
