"""Operator tokens: printed once, stored as salted scrypt hashes, checked per request, with roles."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml

from bastion.operators import (
    PROXY,
    Credentials,
    Principal,
    Role,
    add_operator,
    list_operators,
    remove_operator,
)
from bastion.settings import Secret, read_proxy_token


def test_a_token_verifies_as_its_operator_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "operators.yaml"
    alice = add_operator(path, "alice", Role.VIEWER)
    add_operator(path, "bob", Role.ADMIN)
    stored = path.read_text()
    assert alice not in stored and alice.rsplit("_", 1)[1] not in stored
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    entries = yaml.safe_load(stored)["operators"]
    assert [(e["name"], e["role"]) for e in entries] == [("alice", "viewer"), ("bob", "admin")]
    assert all(e["hash"].startswith("scrypt:") for e in entries) and len({e["salt"] for e in entries}) == 2
    credentials = Credentials(path)
    found = credentials.verify(alice)
    assert found is not None and (found.name, found.role) == ("alice", Role.VIEWER)
    assert credentials.verify(alice) == found  # remembered
    bob_id = entries[1]["id"]
    for wrong in ("", "bst_" + alice[4:], alice + "x", alice[:-1], "bop_nope", f"bop_{bob_id}_x", f"bap_{bob_id}_x"):
        assert credentials.verify(wrong) is None
    assert [o.name for o in list_operators(path)] == ["alice", "bob"]


def test_approver_tokens_of_earlier_versions_keep_working_as_approvers(tmp_path: Path) -> None:
    salt, secret = os.urandom(16), "s3cret-value"
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32).hex()
    entry = {"id": "abcd1234", "name": "old", "salt": salt.hex(), "hash": "scrypt:" + digest}
    (tmp_path / "approvers.yaml").write_text(yaml.safe_dump({"approvers": [entry]}))
    found = Credentials(tmp_path / "operators.yaml").verify(f"bap_abcd1234_{secret}")
    assert found == Principal("abcd1234", "old", Role.APPROVER)
    assert [o.role for o in list_operators(tmp_path / "operators.yaml")] == [Role.APPROVER]


def test_files_are_read_again_and_removed_operators_lose_access(tmp_path: Path) -> None:
    path = tmp_path / "operators.yaml"
    credentials = Credentials(path)
    assert credentials.verify("bop_x_y") is None
    token = add_operator(path, "carol", Role.APPROVER)
    assert credentials.verify(token) is not None
    assert remove_operator(path, "carol") and credentials.verify(token) is None
    assert remove_operator(path, "nobody") == []


@pytest.mark.parametrize(
    ("who", "role", "allowed"),
    [
        (Role.VIEWER, Role.VIEWER, True),
        (Role.VIEWER, Role.APPROVER, False),
        (Role.APPROVER, Role.VIEWER, True),
        (Role.ADMIN, Role.APPROVER, True),
        (Role.ADMIN, Role.PROXY, False),
        (Role.PROXY, Role.VIEWER, False),
        (Role.PROXY, Role.PROXY, True),
    ],
)
def test_roles_include_lower_operator_roles_but_never_the_proxy(who: Role, role: Role, allowed: bool) -> None:
    assert Principal("i", "n", who).has(role) is allowed


def test_the_proxy_token_is_compared_whole_and_must_be_long(tmp_path: Path) -> None:
    token = "bpx_" + "x" * 40
    credentials = Credentials(tmp_path / "operators.yaml", Secret(token))
    assert credentials.verify(token) is PROXY
    assert credentials.verify(token[:-1]) is None and credentials.verify(token + "x") is None
    with pytest.raises(ValueError, match="at least 24"):
        read_proxy_token("short", None)
    file = tmp_path / "proxy.token"
    file.write_text(token + "\n")
    assert read_proxy_token("", file) == Secret(token)
    assert read_proxy_token("", None) is None
