"""The approvals section of bastion.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion import approval_config
from bastion.approval_config import RuleApproval, Scope
from bastion.proxy.config import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "bastion.yaml").write_text(text)
    return tmp_path


def test_without_the_section_approvals_are_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(approval_config.WEBHOOK_ENV, raising=False)
    config = approval_config.load(write(tmp_path, "routes: []\n"))
    assert not config.enabled and config.for_rule("any") == RuleApproval(300.0)


def test_rules_have_their_own_timeout_and_scope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(approval_config.WEBHOOK_ENV, "http://127.0.0.1:9/hook")
    text = """
approvals:
  timeout_seconds: 30
  rules:
    big: {timeout_seconds: 5, scope: {calls: 3, minutes: 10}}
    once: {scope: call}
"""
    config = approval_config.load(write(tmp_path, text))
    assert config.enabled and config.webhook_url == "http://127.0.0.1:9/hook"
    assert config.for_rule("big") == RuleApproval(5.0, Scope(3, 10.0))
    assert config.for_rule("once") == RuleApproval(30.0) and config.for_rule("other").timeout_seconds == 30.0
    assert config.for_rule("big").scope.as_json() == {"calls": 3, "minutes": 10.0}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("approvals: [1]", "approvals must be a mapping"),
        ("approvals: {timeout_seconds: soon}", "approvals.timeout_seconds has value 'soon'. Not a valid number."),
        ("approvals: {rules: {r: {scope: {calls: -1}}}}", "approvals.rules.r.scope.calls has value -1"),
        ("approvals: {rules: {r: {scope: forever}}}", "approvals.rules.r.scope must be"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        approval_config.load(write(tmp_path, text))
