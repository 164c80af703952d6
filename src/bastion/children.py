"""Child processes that end with their parent."""

from __future__ import annotations

import contextlib
import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child, before exec: Linux sends SIGTERM when the parent dies, however it dies (even SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the parent still stops them when it can
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
