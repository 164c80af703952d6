"""The proxy's subscriptions to the one reload mechanism: bastion.yaml's routes, MCP servers and
settings reach the addons that read them, and a bad edit is reported once and changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

from bastion import semconv
from bastion.proxy import config as gateway_config
from bastion.proxy.addons.routing import Routing
from bastion.proxy.config import LiveConfig
from bastion.proxy.state import state
from bastion.proxy.watch import bastion_yaml
from bastion.reload import Reloader
from factories.proxy import flow, policies_dir

EXTRA = "  - name: extra\n    prefix: /extra/\n    provider: openai\n    upstream: http://extra.test:9/\n"


def touch(path: Path, text: str, when: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(when, when))  # a new stamp even within the file system's time resolution


def test_a_route_and_settings_added_to_bastion_yaml_reach_the_addons(tmp_path: Path) -> None:
    policies = policies_dir(tmp_path)
    path = policies / "bastion.yaml"
    live = LiveConfig(gateway_config.load(policies))
    rejected: list[tuple[str, str]] = []
    reloader = Reloader(lambda message, alert: rejected.append((message, alert)))
    reloader.subscribe("bastion.yaml", bastion_yaml(policies, None, live, None))
    routing = Routing(live)
    original = path.read_text()
    assert reloader.check() == []
    edited = original.replace("routes:\n", "routes:\n" + EXTRA, 1)
    touch(path, edited.replace("mcp_refusals: tool_result", "mcp_refusals: jsonrpc_error"), 1)
    assert reloader.check() == ["bastion.yaml"]
    f = flow("/extra/v1/chat/completions")
    routing.requestheaders(f)
    route = state(f).route
    assert f.response is None and route is not None and route.name == "extra"
    assert live.current.mcp_refusals == "jsonrpc_error"
    before = live.current
    touch(path, original.replace("mcp_refusals: tool_result", "mcp_refusals: shout"), 2)
    assert reloader.check() == [] and reloader.check() == []  # reported once, not on every poll
    assert live.current is before
    assert len(rejected) == 1 and "shout" in rejected[0][0] and rejected[0][1] == semconv.ALERT_POLICY_REJECTED
