"""What a new user meets first: readable help, client commands that find the collector `up` started,
listeners that fail loudly on a busy port, quiet or JSON logs."""

from __future__ import annotations

import http.server
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bastion import cli, listen
from support import BASTION, free_ports, running, wait_for_http


def _every_parser(parser: object) -> Iterator[tuple[str, object]]:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _every_parser(sub)


def test_every_commands_help_reads_plainly() -> None:
    helps = {prog: p.format_help() for prog, p in _every_parser(cli.build_parser())}  # type: ignore[attr-defined]
    assert len(helps) > 30 and "bastion keys create" in helps
    for prog, text in helps.items():
        for wrong in ("PosixPath", "default None", "``", "default ''"):
            assert wrong not in text, f"{prog} --help shows {wrong!r}:\n{text}"
    assert "[env BASTION_POLICIES, default policies]" in " ".join(helps["bastion keys create"].split())
    assert "--log-format" in helps["bastion up"] and "--log-level" in helps["bastion approvals list"]


@pytest.mark.parametrize(
    "command", [["approvals", "list"], ["agents", "list"], ["audit", "verify"], ["approvals", "approve", "x"]]
)
def test_client_commands_ask_the_collector_up_starts(monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    monkeypatch.delenv("BASTION_COLLECTOR_URL", raising=False)
    monkeypatch.setenv("BASTION_COLLECTOR_HOST", "0.0.0.0")
    monkeypatch.setenv("BASTION_COLLECTOR_PORT", "5999")
    assert cli.build_parser().parse_args(command).collector_url == "http://127.0.0.1:5999"
    monkeypatch.setenv("BASTION_COLLECTOR_HOST", "10.1.2.3")
    assert cli.build_parser().parse_args(command).collector_url == "http://10.1.2.3:5999"


def test_schema_uses_the_collectors_database_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_DATABASE", "governance")
    monkeypatch.setenv("BASTION_CLICKHOUSE_CLUSTER", "prod")
    args = cli.build_parser().parse_args(["schema"])
    assert (args.database, args.cluster) == ("governance", "prod")


def _busy() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("part", "flag", "name"),
    [
        (["collector"], "--collector-port", "collector"),
        (["proxy"], "--proxy-port", "proxy (reverse, --proxy-port)"),
        (["proxy"], "--explicit-port", "proxy (explicit, --explicit-port)"),
        (["dashboard"], "--dashboard-port", "dashboard"),
        (["scripted-model"], "--port", "scripted-model"),
        (["tool-server"], "--port", "tool-server"),
    ],
)
def test_every_listener_fails_naming_its_busy_port(tmp_path: Path, part: list[str], flag: str, name: str) -> None:
    sock, port = _busy()
    others = [f"--{f}-port" for f in ("proxy", "explicit")]
    spare = [a for f, p in zip(others, free_ports(2), strict=True) if f != flag for a in (f, str(p))]
    argv = [*BASTION, *part, flag, str(port), *(spare if part == ["proxy"] else [])]
    with sock:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode != 0
    assert f"bastion {name}: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr


class _Answers200(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_up_starts_nothing_and_never_says_it_is_up_when_a_port_is_taken(tmp_path: Path) -> None:
    # Another stack holds the tool server's port and answers every health check.
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers200)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    busy = other.server_address[1]
    collector, proxy, explicit, dashboard, model = free_ports(5)
    env = {
        "BASTION_DATA_DIR": str(tmp_path / "data"),
        "BASTION_CONFDIR": str(tmp_path / "conf"),
        "BASTION_COLLECTOR_PORT": str(collector),
        "BASTION_PROXY_PORT": str(proxy),
        "BASTION_EXPLICIT_PORT": str(explicit),
        "BASTION_DASHBOARD_PORT": str(dashboard),
        "BASTION_SCRIPTED_MODEL_PORT": str(model),
        "BASTION_TOOL_SERVER_PORT": str(busy),
    }
    log = tmp_path / "up.log"
    try:
        with running([*BASTION, "up", "--demo"], env, log=log) as up:
            assert up.wait(timeout=120) == 1
    finally:
        other.shutdown()
        other.server_close()
    output = log.read_text()
    assert f"bastion tool-server (--tool-server-port): cannot listen on 127.0.0.1:{busy}" in output
    assert "Bastion is up" not in output
    assert not (tmp_path / "data").exists()  # the collector never started


def test_logs_are_json_lines_when_asked(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    log = tmp_path / "collector.log"
    argv = [*BASTION, "collector", "--collector-port", str(port), "--data-dir", str(tmp_path / "data")]
    with running([*argv, "--log-format", "json", "--log-level", "info"], log=log) as proc:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60, proc=proc)
        assert httpx.get(f"http://127.0.0.1:{port}/api/audit", timeout=10).status_code == 401
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert lines and {"time", "level", "logger", "message"} <= lines[0].keys()
    assert any("Uvicorn running" in line["message"] or "startup" in line["message"] for line in lines), lines


def test_logs_are_quiet_by_default(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    log = tmp_path / "collector.log"
    argv = [*BASTION, "collector", "--collector-port", str(port), "--data-dir", str(tmp_path / "data")]
    with running(argv, {"BASTION_LOG_LEVEL": ""}, log=log) as proc:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60, proc=proc)
    assert " INFO " not in log.read_text()


def test_a_second_ctrl_c_does_not_cut_the_orderly_stop(tmp_path: Path) -> None:
    # Under `make demo`, `uv run` passes the terminal's SIGINT on: `up` gets it twice.
    collector, proxy, explicit, dashboard = free_ports(4)
    env = {
        "BASTION_DATA_DIR": str(tmp_path / "data"),
        "BASTION_CONFDIR": str(tmp_path / "conf"),
        "BASTION_COLLECTOR_PORT": str(collector),
        "BASTION_PROXY_PORT": str(proxy),
        "BASTION_EXPLICIT_PORT": str(explicit),
        "BASTION_DASHBOARD_PORT": str(dashboard),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "up.log"
    with running([*BASTION, "up"], env, log=log) as up:
        deadline = time.monotonic() + 120
        while "Press Ctrl-C to stop." not in log.read_text():
            assert up.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        up.send_signal(signal.SIGINT)
        while "Stopping" not in log.read_text() and time.monotonic() < deadline:  # Streamlit's goodbye
            time.sleep(0.05)
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
    output = log.read_text()
    assert "Traceback" not in output and "collector unreachable" not in output, output
    for port in (collector, proxy, explicit, dashboard):
        listen.check_free("test", "127.0.0.1", port)  # every child let go of its port
