"""``bastion lists show|add|remove``: the named lists conditions use (``in_list(r.args.to, "contacts")``).

A list is ``policies/lists/<name>.txt``, one entry per line. These commands edit that file in place
(comments and order kept, written atomically); running proxies reload it within a second or two.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bastion import settings as s
from bastion.files import replace_text
from bastion.proxy.conditions import LIST_NAME, LIST_SUFFIX, LISTS_DIR, load_lists


def _path(args: argparse.Namespace) -> Path | None:
    if not LIST_NAME.match(args.name):
        print(f"bastion lists: name {args.name!r} must be letters, digits, '.', '_' or '-'", file=sys.stderr)
        return None
    return Path(args.policies) / LISTS_DIR / f"{args.name}{LIST_SUFFIX}"


def _entries(args: argparse.Namespace) -> list[str] | None:
    entries = [e.strip() for e in args.entries]
    bad = [e for e in entries if not e or e.startswith("#") or "\n" in e or "\r" in e]
    if bad:
        print(f"bastion lists: entries must be one non-empty line not starting with '#': {bad!r}", file=sys.stderr)
        return None
    return entries


def show(args: argparse.Namespace) -> int:
    lists = load_lists(Path(args.policies))
    if args.name is None:
        for name, entries in sorted(lists.items()):
            print(f"{name}\t{len(entries)} entries")
        return 0
    if args.name not in lists:
        print(
            f"bastion lists: no list named {args.name!r} (lists: {', '.join(sorted(lists)) or 'none'})", file=sys.stderr
        )
        return 1
    for entry in sorted(lists[args.name]):
        print(entry)
    return 0


def add(args: argparse.Namespace) -> int:
    path, entries = _path(args), _entries(args)
    if path is None or entries is None:
        return 2
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    present = {line.strip() for line in lines}
    new = [e for e in dict.fromkeys(entries) if e not in present]
    replace_text(path, "\n".join([*lines, *new]) + "\n")
    print(f"{args.name}: added {len(new)}, {len(entries) - len(new)} already present")
    return 0


def remove(args: argparse.Namespace) -> int:
    path, entries = _path(args), _entries(args)
    if path is None or entries is None:
        return 2
    if not path.exists():
        print(f"bastion lists: no list named {args.name!r}", file=sys.stderr)
        return 1
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() not in set(entries)]
    replace_text(path, "".join(f"{line}\n" for line in kept))
    print(f"{args.name}: removed {len(lines) - len(kept)}")
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lists = commands.add_parser("lists", help="show and edit the named lists policy conditions use")
    actions = lists.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("show", help="the lists and their sizes, or one list's entries")
    listing.add_argument("name", nargs="?", help="a list's name")
    listing.set_defaults(run=show)
    adding = actions.add_parser("add", help="add entries to a list (creating it)")
    adding.set_defaults(run=add)
    removing = actions.add_parser("remove", help="remove entries from a list")
    removing.set_defaults(run=remove)
    for p in (adding, removing):
        p.add_argument("name", help="the list's name (policies/lists/<name>.txt)")
        p.add_argument("entries", nargs="+", help="entries, one argument each")
    for p in (listing, adding, removing):
        s.add_setting(p, s.POLICIES)
