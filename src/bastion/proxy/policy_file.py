"""Reading ``policy.csv`` line by line, so every rule knows its line and commas mean what they seem.

Casbin's file adapter splits a line at every comma outside brackets, so ``r.args.to == "a,b"`` is cut
in two. Here a comma splits fields only outside brackets and outside string literals, and a field may
also be quoted the standard CSV way (``"r.args.to == ""a,b"" "``): a field that starts with ``"`` and
ends at its closing quote is unquoted, doubled quotes becoming one. A field that starts with a string
literal and goes on (``"!" not in r.args.body``) is read as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PolicyLine:
    number: int  # 1-based line in the file
    fields: list[str]  # the section key (p, g, ...) first


def read_policy(path: Path) -> list[PolicyLine]:
    lines = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        lines.append(PolicyLine(number, split_fields(stripped)))
    return lines


def split_fields(line: str) -> list[str]:
    """``line`` split into stripped fields (see the module's docstring)."""
    fields: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        quoted = _csv_quoted(line, i)
        if quoted is not None:
            value, i = quoted
        else:
            start, i = i, _raw_end(line, i)
            value = line[start:i].strip()
        fields.append(value)
        if i >= n:
            return fields
        i += 1  # the comma


def _csv_quoted(line: str, i: int) -> tuple[str, int] | None:
    """A CSV-quoted field starting at ``i``: its value and the index of the comma (or end) after it."""
    if not line.startswith('"', i):
        return None
    j, value = i + 1, []
    while j < len(line):
        if line[j] == '"':
            if line.startswith('""', j):
                value.append('"')
                j += 2
                continue
            k = j + 1
            while k < len(line) and line[k] in " \t":
                k += 1
            return ("".join(value), k) if k == len(line) or line[k] == "," else None
        value.append(line[j])
        j += 1
    return None


def _raw_end(line: str, i: int) -> int:
    """The index of the comma ending the field at ``i`` (outside brackets and string literals), or the end."""
    depth, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in "'\"":
            quote = line[i : i + 3] if line[i : i + 3] in ("'''", '"""') else c
            i += len(quote)
            while i < n and not line.startswith(quote, i):
                i += 2 if line[i] == "\\" else 1
            i += len(quote)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(depth - 1, 0)
        elif c == "," and depth == 0:
            return i
        i += 1
    return n
