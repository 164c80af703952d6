import os
from pathlib import Path

import pytest

from bastion.files import ConfigError
from bastion.proxy import config as gateway_config
from bastion.proxy.config import LiveConfig
from bastion.proxy.limiter import Limiter
from bastion.proxy.limits import AgentLimits, LimitSettings, load, parse
from bastion.proxy.watch import bastion_yaml
from bastion.reload import Reloader

PATH = Path("bastion.yaml")


def test_an_agents_limits_are_the_defaults_overridden_by_role_agent_and_key() -> None:
    settings = parse(
        PATH,
        {
            "defaults": {"requests_per_minute": 600, "concurrency": 8, "max_steps": 50},
            "roles": {"analyst": {"requests_per_minute": 60}},
            "agents": {"bot": {"concurrency": 2}},
            "keys": {"abc123": {"max_steps": 5}},
        },
    )
    assert settings.for_agent("other", "assistant", "k") == AgentLimits(
        requests_per_minute=600, concurrency=8, max_steps=50
    )
    assert settings.for_agent("bot", "analyst", "abc123") == AgentLimits(
        requests_per_minute=60, concurrency=2, max_steps=5
    )


def test_no_section_means_no_limits() -> None:
    assert parse(PATH, None) == LimitSettings() and not LimitSettings().enabled


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"defaults": {"requests_per_minute": "many"}}, "limits.defaults.requests_per_minute has value 'many'"),
        ({"defaults": {"concurrency": 1.5}}, "Not an integer"),
        ({"defaults": {"max_steps": 0}}, "It must be positive"),
        ({"defaults": {"suspend_on_trip": "yes"}}, "Not a boolean"),
        ({"defaults": {"rpm": 1}}, "unknown keys ['rpm']"),
        ({"targets": [{"requests_per_second": 1}]}, "targets[0] needs a match"),
        ({"upstreams": {"failures": -1}}, "limits.upstreams.failures has value -1"),
        ({"budgets": {}}, "unknown keys ['budgets']"),
        ([], "must be a mapping"),
    ],
)
def test_bad_values_are_named_with_their_key(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as e:
        parse(PATH, raw)
    assert message in str(e.value)


def test_edits_reload_and_bad_ones_keep_the_previous_limits(tmp_path: Path) -> None:
    """The limits follow bastion.yaml through the proxy's one reload mechanism (proxy/watch.py)."""
    yaml_file = tmp_path / "bastion.yaml"
    yaml_file.write_text("routes: []\n")
    limiter = Limiter(load(tmp_path))
    reloader = Reloader(lambda message, alert: None)
    reloader.subscribe(
        "bastion.yaml", bastion_yaml(tmp_path, None, LiveConfig(gateway_config.load(tmp_path)), None, limiter)
    )
    assert reloader.check() == []
    yaml_file.write_text("routes: []\nlimits: {defaults: {requests_per_second: 3}}\n")
    os.utime(yaml_file, ns=(1, 1))
    assert reloader.check() == ["bastion.yaml"] and limiter.settings.defaults.requests_per_second == 3
    yaml_file.write_text("routes: []\nlimits: {defaults: {requests_per_second: -3}}\n")
    os.utime(yaml_file, ns=(2, 2))
    assert reloader.check() == [] and limiter.settings.defaults.requests_per_second == 3
    assert load(tmp_path / "missing") == LimitSettings()
