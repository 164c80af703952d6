"""Hot reload of pii.yaml: edits take effect, bad edits keep the previous configuration."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.proxy.addons.redaction import Redaction
from bastion.proxy.pii import audit
from bastion.proxy.pii import config as pii_config
from bastion.proxy.pii.reload import PiiReloader
from bastion.proxy.policy import PolicyEngine
from bastion.reload import Reloader
from support import SESSION_POLICIES, copy_policies


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    copy_policies(target)
    return target


@pytest.fixture
def redaction(policies: Path) -> Iterator[Redaction]:
    config = pii_config.load(policies)
    assert config is not None
    addon = Redaction(config)
    yield addon
    addon.done()
    audit.install(None)


def edit(policies: Path, text: str) -> None:
    path = policies / "pii.yaml"
    path.write_text(text)
    later = time.time() + 5
    os.utime(path, (later, later))


def test_an_edit_takes_effect_without_a_restart(policies: Path, redaction: Redaction) -> None:
    reloader = PiiReloader(policies, redaction)
    assert not reloader.check()
    assert "<IP_ADDRESS>" in redaction.audit_text("the host is 10.20.30.40")
    original = (policies / "pii.yaml").read_text()
    assert "  IP_ADDRESS: {action: redact}\n" in original
    edit(policies, original.replace("  IP_ADDRESS: {action: redact}\n", ""))
    assert reloader.check()
    assert redaction.audit_text("the host is 10.20.30.40") == "the host is 10.20.30.40"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda p: edit(p, "entities:\n  EMAIL_ADDRESS: {action: shout}\n"), "shout"),
        (lambda p: (p / "pii.yaml").unlink(), "removed"),
    ],
)
def test_a_bad_edit_keeps_the_previous_configuration(
    policies: Path, redaction: Redaction, change: object, error: str
) -> None:
    reloader = PiiReloader(policies, redaction)
    before = redaction.config
    change(policies)  # type: ignore[operator]
    with pytest.raises(ValueError, match=error):
        reloader.check()
    assert redaction.config is before
    assert "<EMAIL_ADDRESS>" in redaction.audit_text("mail bob@example.com")


def test_the_reloader_reports_rejected_pii_edits(policies: Path, redaction: Redaction) -> None:
    rejected: list[str] = []
    reloader = Reloader(lambda message, alert: rejected.append(message))
    reloader.subscribe("policy", PolicyEngine(policies).reload_if_changed)
    reloader.subscribe("pii.yaml", PiiReloader(policies, redaction).check)
    edit(policies, "entities: [not, a, mapping]\n")
    reloader.check()
    assert len(rejected) == 1 and "pii.yaml" in rejected[0]


def test_a_new_file_switches_redaction_on(policies: Path) -> None:
    (policies / "pii.yaml").unlink()
    addon = Redaction(None)
    reloader = PiiReloader(policies, addon)
    assert not reloader.check() and addon.config is None
    shutil.copy(SESSION_POLICIES / "pii.yaml", policies / "pii.yaml")
    try:
        assert reloader.check()
        assert addon.config is not None and "<IP_ADDRESS>" in addon.audit_text("the host is 10.20.30.40")
        assert audit.redact({"host": "10.20.30.40"}) == {"host": "<IP_ADDRESS>"}
    finally:
        addon.done()
        audit.install(None)
