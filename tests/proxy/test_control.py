"""The proxy's approvals settings follow edits to bastion.yaml while it runs."""

from __future__ import annotations

import os
from pathlib import Path

from bastion import approval_config
from bastion.proxy.control import Control


def test_approvals_settings_reload_and_a_bad_edit_keeps_the_last_good(tmp_path: Path) -> None:
    path = tmp_path / "bastion.yaml"
    path.write_text("routes: []\n")
    control = Control("http://127.0.0.1:9", approval_config.load(tmp_path), policies_dir=tmp_path)
    assert not control.holds_reviews()
    path.write_text("approvals:\n  timeout_seconds: 7\n")
    os.utime(path, ns=(1, 1))
    control.reload_if_changed()
    assert control.holds_reviews() and control.config.timeout_seconds == 7
    path.write_text("approvals:\n  timeout_seconds: never\n")
    control.reload_if_changed()
    assert control.holds_reviews() and control.config.timeout_seconds == 7
