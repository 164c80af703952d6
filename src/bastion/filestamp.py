"""Whether a file changed since we last looked: the basis of every hot reload."""

from __future__ import annotations

from pathlib import Path

Stamp = tuple[int, int] | None


def stamp(path: Path) -> Stamp:
    """``(mtime in ns, size)`` of ``path``, or None when it is missing or unreadable."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)
