import os
import stat
from pathlib import Path

import pytest

from bastion import audit_keys
from bastion.audit_keys import KEY_FILE, load_or_create, valid


def test_the_key_is_created_once_with_mode_0600_and_reloaded(tmp_path: Path) -> None:
    previous = os.umask(0o000)  # a careless umask does not widen the key's mode
    try:
        first = load_or_create(tmp_path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert load_or_create(tmp_path).public_key == first.public_key


def test_a_key_others_may_read_is_refused(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    (tmp_path / KEY_FILE).chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_create(tmp_path)


def test_a_signature_covers_kind_instance_position_and_hash() -> None:
    signer = audit_keys.Signer.generate()
    signature = signer.sign("head", "i1", 7, "ab" * 32)
    assert valid(signer.public_key, signature, "head", "i1", 7, "ab" * 32)
    for other in (("anchor", "i1", 7, "ab" * 32), ("head", "i2", 7, "ab" * 32), ("head", "i1", 8, "ab" * 32)):
        assert not valid(signer.public_key, signature, *other)
    assert not valid("zz", signature, "head", "i1", 7, "ab" * 32)
    assert not valid(signer.public_key, "not hex", "head", "i1", 7, "ab" * 32)
