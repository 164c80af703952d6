"""The proxy's side of human control: approvals settings follow bastion.yaml, suspensions survive restarts."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from bastion import approval_config
from bastion.proxy import config as gateway_config
from bastion.proxy import suspensions
from bastion.proxy.config import LiveConfig
from bastion.proxy.control import Control
from bastion.proxy.watch import bastion_yaml


def test_approvals_settings_reload_and_a_bad_edit_keeps_the_last_good(tmp_path: Path) -> None:
    path = tmp_path / "bastion.yaml"
    path.write_text("routes: []\n")
    control = Control("http://127.0.0.1:9", approval_config.load(tmp_path))
    live = LiveConfig(gateway_config.load(tmp_path))
    check = bastion_yaml(tmp_path, None, live, control)
    assert not control.holds_reviews()
    path.write_text("approvals:\n  timeout_seconds: 7\n")
    os.utime(path, ns=(1, 1))
    assert check()
    assert control.holds_reviews() and control.config.timeout_seconds == 7
    path.write_text("approvals:\n  timeout_seconds: never\n")
    with pytest.raises(ValueError, match="timeout_seconds"):
        check()
    assert control.holds_reviews() and control.config.timeout_seconds == 7


def test_suspensions_survive_a_restart_until_the_collector_answers(tmp_path: Path) -> None:
    file = tmp_path / suspensions.FILE_NAME
    agents = {"agent-1": {"suspended": True, "reason": "runaway loop"}, "agent-2": {"suspended": False}}

    def collector(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"agents": agents})

    async def heard() -> None:
        control = Control("http://collector.test", approval_config.load(tmp_path), suspensions_file=file)
        control._client = httpx.AsyncClient(base_url=control.base_url, transport=httpx.MockTransport(collector))
        await control.refresh()
        await control.stop()

    asyncio.run(heard())
    restarted = Control("http://127.0.0.1:9", approval_config.load(tmp_path), suspensions_file=file)
    assert restarted.suspended == {"agent-1": "runaway loop"}
    agents["agent-1"]["suspended"] = False  # resumed: the file forgets it too
    asyncio.run(heard())
    assert Control("http://127.0.0.1:9", approval_config.load(tmp_path), suspensions_file=file).suspended == {}


@pytest.mark.parametrize("text", [None, "", "{not json", '{"suspended": ["agent-1"]}', "[]"])
def test_no_readable_suspensions_file_means_none_known(tmp_path: Path, text: str | None) -> None:
    file = tmp_path / suspensions.FILE_NAME
    if text is not None:
        file.write_text(text)
    assert suspensions.load(file) == {}


def test_a_suspension_this_proxy_made_holds_until_the_collector_shows_it(tmp_path: Path) -> None:
    agents: dict[str, dict[str, object]] = {}
    posted: list[str] = []

    def collector(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posted.append(request.url.path)
            return httpx.Response(200, json={})
        return httpx.Response(200, json={"agents": agents})

    async def suspend() -> None:
        control = Control("http://collector.test", approval_config.load(tmp_path))
        control._client = httpx.AsyncClient(base_url=control.base_url, transport=httpx.MockTransport(collector))
        await control.suspend("looper", "step budget")
        await control.refresh()  # a state read before the collector stored it
        assert control.suspended == {"looper": "step budget"}
        agents["looper"] = {"suspended": True, "reason": "step budget"}
        await control.refresh()
        agents["looper"] = {"suspended": False}  # a human resumed it
        await control.refresh()
        assert control.suspended == {}
        await control.stop()

    asyncio.run(suspend())
    assert posted == ["/api/agents/looper/suspend"]
