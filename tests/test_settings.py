"""Each setting is declared once (``bastion.settings.SETTINGS``); the parsers, `bastion up`'s
arguments to its children and the docs' table are derived from it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from bastion import settings as s
from bastion.cli import build_parser
from bastion.stack import children

DOCS = Path(__file__).parent.parent / "docs" / "settings.md"
BEGIN, END = "<!-- settings table: begin -->\n", "<!-- settings table: end -->\n"
TOKEN = "t" * 32


def other(setting: s.Setting[Any]) -> str:
    """A value for ``setting``'s flag that is not its default."""
    default = setting.default
    if setting.cast in (int, s._optional_int, s._workers):
        return str((default or 0) + 7)
    if setting.cast is float:
        return str(default + 1.5)
    return f"/elsewhere/{setting.name}"


def command(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    group = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = group.choices[name]
    assert isinstance(found, argparse.ArgumentParser)
    return found


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in s.SETTINGS:
        monkeypatch.delenv(setting.env, raising=False)


def test_every_up_flag_reaches_the_child_that_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = [t for t in s.up_settings() if t.flag is not None]
    argv = ["up"]
    for setting in flags:
        assert setting.flag is not None
        argv += [setting.flag, other(setting)]
    up = build_parser().parse_args(argv)
    for setting in flags:  # every flag was parsed to a value that is not its default
        assert s.value(up, setting) != setting.default, setting.name
    commands = children(up, TOKEN)
    reached = set()
    for part in s.CHILDREN:
        child_argv, env = commands[part]
        assert child_argv[3] == part
        for value in env.values():  # secrets travel by environment, never on the command line
            assert value not in child_argv
        with monkeypatch.context() as m:
            for name, value in env.items():
                m.setenv(name, value)
            child = build_parser().parse_args(child_argv[3:])
            for setting in s.for_part(part):
                if setting.computed_by_up or setting is s.PROXY_TOKEN:
                    continue
                assert s.value(child, setting) == s.value(up, setting), (part, setting.name)
                reached.add(setting.name)
            if s.PROXY_TOKEN in s.for_part(part):
                assert s.value(child, s.PROXY_TOKEN) == s.Secret(TOKEN)
            if s.COLLECTOR_URL in s.for_part(part):  # the collector `up` started
                assert s.value(child, s.COLLECTOR_URL) == s.collector_url(up.collector_host, up.collector_port)
    own = {t.name for t in s.up_settings() if s.UP in t.parts}
    assert {t.name for t in flags} - own <= reached


def test_secrets_go_by_environment_and_never_on_the_command_line() -> None:
    url = "http://bastion:s3cret@clickhouse.example:8123"
    up = build_parser().parse_args(["up", "--clickhouse-url", url])
    argv, env = children(up, TOKEN)[s.COLLECTOR]
    assert env[s.CLICKHOUSE_URL.env] == url and env[s.PROXY_TOKEN.env] == TOKEN
    assert not any("s3cret" in a or TOKEN in a for a in argv)
    assert all(s.PROXY_TOKEN.env in children(up, TOKEN)[part][1] for part in (s.COLLECTOR, s.PROXY))


def test_client_commands_find_the_collector_up_would_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(s.COLLECTOR_PORT.env, "5999")
    for argv in (["approvals", "list"], ["agents", "list"], ["audit", "verify"]):
        assert build_parser().parse_args(argv).collector_url == "http://127.0.0.1:5999"


def test_the_docs_table_is_the_declaration() -> None:
    text = DOCS.read_text()
    assert BEGIN in text and END in text, f"{DOCS} lacks the table markers"
    table = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert table == s.settings_table(), "regenerate with: python -m bastion.settings"
    for setting in s.SETTINGS:
        assert setting.env in table
