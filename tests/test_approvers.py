"""Approver tokens: printed once, stored as salted scrypt hashes, checked per request."""

from __future__ import annotations

from pathlib import Path

import yaml

from bastion.approvers import Approvers, add_approver, list_approvers


def test_a_token_verifies_as_its_approver_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "approvers.yaml"
    alice, bob = add_approver(path, "alice"), add_approver(path, "bob")
    stored = path.read_text()
    assert alice not in stored and alice.rsplit("_", 1)[1] not in stored
    entries = yaml.safe_load(stored)["approvers"]
    assert [e["name"] for e in entries] == ["alice", "bob"] and all(e["hash"].startswith("scrypt:") for e in entries)
    assert len({e["salt"] for e in entries}) == 2
    approvers = Approvers(path)
    found_alice, found_bob = approvers.verify(alice), approvers.verify(bob)
    assert found_alice is not None and found_alice.name == "alice"
    assert found_bob is not None and found_bob.name == "bob"
    assert approvers.verify(alice) == found_alice  # remembered
    for wrong in ("", "bst_" + alice[4:], alice + "x", alice[:-1], "bap_nope", f"bap_{found_bob.id}_x"):
        assert approvers.verify(wrong) is None
    assert [a.name for a in list_approvers(path)] == ["alice", "bob"]


def test_the_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "approvers.yaml"
    approvers = Approvers(path)
    assert approvers.verify("bap_x_y") is None
    token = add_approver(path, "carol")
    assert approvers.verify(token) is not None
    path.write_text("approvers: []\n")
    assert approvers.verify(token) is None
