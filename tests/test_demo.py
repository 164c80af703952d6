"""`bastion up --demo`, as `make demo` runs it: the reference agent's calls all behave as expected."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from support import BASTION, create_key, free_ports, running


def wait_for_text(log: Path, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text() if log.exists() else ""
        if text in content:
            return content
        time.sleep(0.5)
    raise AssertionError(f"{text!r} did not appear in {log}:\n{log.read_text()[-3000:]}")


def wait_for_status(url: str, key: str) -> int:
    """The status of a call with ``key``, once the proxy has reloaded its keys (401 until then)."""
    deadline = time.monotonic() + 15
    chat = {"model": "scripted-small", "messages": [{"role": "user", "content": "hello"}]}
    auth = {"authorization": f"Bearer {key}"}
    while (status := httpx.post(url, json=chat, headers=auth, timeout=10).status_code) == 401:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return status


def test_demo_runs_the_reference_agent_through_bastion(tmp_path: Path) -> None:
    model, tools, proxy, explicit, collector, dashboard = free_ports(6)
    env = {
        "BASTION_DATA_DIR": str(tmp_path / "data"),
        "BASTION_CONFDIR": str(tmp_path / "conf"),
        "BASTION_SCRIPTED_MODEL_PORT": str(model),
        "BASTION_TOOL_SERVER_PORT": str(tools),
        "BASTION_PROXY_PORT": str(proxy),
        "BASTION_EXPLICIT_PORT": str(explicit),
        "BASTION_COLLECTOR_PORT": str(collector),
        "BASTION_DASHBOARD_PORT": str(dashboard),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "demo.log"
    with running([*BASTION, "up", "--demo"], env, log=log) as demo:
        output = wait_for_text(log, "Press Ctrl-C to stop.", timeout=120)
        assert "Reference agent finished with status 0" in output
        assert "Tool agent finished with status 0" in output, output
        assert "runaway model stopped by Bastion at model call 5: repeated_tool_call" in output, output
        assert "denied as expected" in output and "no-large-models" in output
        assert f"http://127.0.0.1:{dashboard}" in output and "mitmproxy-ca-cert.pem" in output
        # The demo's admin token: written for the operator alone, printed where, used by the CLI as printed.
        token_file = tmp_path / "demo" / "operator.token"
        assert oct(token_file.stat().st_mode & 0o777) == "0o600" and str(token_file.resolve()) in output
        admin = {"authorization": f"Bearer {token_file.read_text().strip()}"}
        url = f"http://127.0.0.1:{collector}/api/audit"
        assert httpx.get(url, params={"agent": "demo-agent"}, timeout=10).status_code == 401
        audit = httpx.get(url, params={"agent": "demo-agent"}, headers=admin, timeout=10)
        assert audit.status_code == 200 and audit.json()["items"]
        received = httpx.get(f"http://127.0.0.1:{tools}/_tool_server/calls", timeout=10).json()
        # Only what the policy allows reached the tool server: no mail to outsiders, no large payment.
        assert [(c["name"], c["arguments"]) for c in received] == [
            ("get_weather", {"city": "Paris"}),
            ("send_money", {"amount": 50, "recipient": "alice@example.com"}),
            ("get_weather", {"city": "Oslo"}),
            # The runaway model's loop: four calls ran before Bastion stopped the fifth model call.
            *[("get_weather", {"city": "Rome"})] * 4,
        ]
        assert f"http://127.0.0.1:{proxy}/mcp/<name>" in output
        # The key command the demo prints, run as printed, issues a key the demo's proxy accepts.
        command = next(line.split() for line in output.splitlines() if line.strip().startswith("bastion keys create"))
        assert command[-2:] == ["--keys-file", str(tmp_path / "demo" / "keys.yaml")]
        new_key = create_key(Path(command[-1]), agent="my-agent")
        assert wait_for_status(f"http://127.0.0.1:{proxy}/openai/v1/chat/completions", new_key) == 200
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 0
    assert (tmp_path / "demo" / "keys.yaml").exists()
