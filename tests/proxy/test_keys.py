import os
import time
from pathlib import Path

import pytest

from bastion.proxy.keys import KeyStore, create_key, hash_key, list_keys, revoke


def test_keys_are_stored_as_hashes_only(tmp_path: Path) -> None:
    key, key_id = create_key(tmp_path / "keys.yaml", "agent-1", "assistant")
    text = (tmp_path / "keys.yaml").read_text()
    assert key not in text
    assert hash_key(key) in text
    assert [e["id"] for e in list_keys(tmp_path / "keys.yaml")] == [key_id]
    assert "hash" not in list_keys(tmp_path / "keys.yaml")[0]


def test_lookup_finds_the_agent_and_role(tmp_path: Path) -> None:
    key, _ = create_key(tmp_path / "keys.yaml", "agent-1", "assistant")
    identity = KeyStore(tmp_path / "keys.yaml").lookup(key)
    assert identity is not None and (identity.agent_id, identity.role) == ("agent-1", "assistant")
    assert KeyStore(tmp_path / "keys.yaml").lookup(key + "x") is None


def test_revoke_takes_effect_in_a_running_store(tmp_path: Path, monkeypatch: object) -> None:
    path = tmp_path / "keys.yaml"
    key, key_id = create_key(path, "agent-1", "assistant")
    other, _ = create_key(path, "agent-2", "assistant")
    store = KeyStore(path)
    assert store.lookup(key) is not None
    assert revoke(path, key_id_=key_id) == [key_id]
    store._checked = time.monotonic() - 5  # as if the next check were due
    assert store.lookup(key) is None
    assert store.lookup(other) is not None


def test_broken_edit_keeps_the_previous_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    key, _ = create_key(path, "agent-1", "assistant")
    store = KeyStore(path)
    path.write_text("keys: {not: [a list")
    os.utime(path, (time.time() + 10, time.time() + 10))
    store._checked = 0
    assert store.lookup(key) is not None


def test_revoke_by_agent_revokes_all_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    create_key(path, "agent-1", "a")
    create_key(path, "agent-1", "b")
    assert len(revoke(path, agent_id="agent-1")) == 2
    assert revoke(path, agent_id="agent-1") == []


@pytest.mark.parametrize(
    "text",
    [
        "keys: {not: [a list",
        "keys: [1]",
        "- just a list",
        "keys: [{agent: agent-2}]",
        "keys: [{hash: 5, agent: agent-2}]",
    ],
)
def test_an_edit_that_does_not_load_is_reported_once_and_the_previous_keys_keep_serving(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "keys.yaml"
    key, _ = create_key(path, "agent-1", "assistant")
    rejected: list[str] = []
    store = KeyStore(path, on_rejected=rejected.append)
    path.write_text(text)
    os.utime(path, (time.time() + 10, time.time() + 10))
    assert not store.check() and not store.check()
    assert len(rejected) == 1 and str(path) in rejected[0]
    assert store.lookup(key) is not None and store.lookup("bst_other") is None


def test_a_file_that_does_not_load_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "keys.yaml").write_text("keys: [1]")
    with pytest.raises(ValueError, match="key entry 1 must be a mapping"):
        KeyStore(tmp_path / "keys.yaml")
