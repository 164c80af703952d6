from typing import Any

import pytest

from bastion import audit_chain
from bastion.audit_chain import GENESIS, canonical, seal, verify


def chain(n: int, instance: str = "i1") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        fields = {"timestamp": 1_000 + seq, "agent": "a", "decision": "allow", "rule": "r", "target": "m"}
        record = seal(fields, instance=instance, seq=seq, prev_hash=prev)
        out.append(record)
        prev = record["hash"]
    return out


def test_canonical_form_is_sorted_compact_json_without_the_hash() -> None:
    record = chain(1)[0]
    text = canonical(record)
    assert text.startswith('{"agent":"a","decision":"allow","instance":"i1"')
    assert '"hash"' not in text and " " not in text
    assert canonical({**record, "seq": "1", "extra": "ignored"}) == text


def test_an_untouched_chain_verifies() -> None:
    records = chain(5) + chain(3, "i2")
    report = verify(reversed(records), [{"instance": "i1", "seq": 5, "hash": records[4]["hash"]}])
    assert report.intact and report.records == 8 and report.instances == 2


def edited(r: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r[2] = {**r[2], "decision": "deny"}
    return r


def deleted(r: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return r[:2] + r[3:]


def inserted(r: list[dict[str, Any]]) -> list[dict[str, Any]]:
    forged = seal({"decision": "allow"}, instance="i1", seq=3, prev_hash=r[1]["hash"])
    return [*r, forged]


def reordered(r: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r[2], r[3] = {**r[3], "seq": 3}, {**r[2], "seq": 4}
    return r


@pytest.mark.parametrize(
    ("tamper", "seq", "words"),
    [
        (edited, 3, "does not match its hash"),
        (deleted, 3, "missing"),
        (inserted, 3, "claim this position"),
        (reordered, 3, "does not match its hash"),
    ],
)
def test_each_kind_of_tampering_names_the_first_broken_link(tamper: Any, seq: int, words: str) -> None:
    report = verify(tamper(chain(6)))
    (broken,) = report.breaks
    assert broken.seq == seq and words in broken.problem and not report.intact


def test_a_truncated_tail_is_caught_by_the_newest_head() -> None:
    records = chain(6)
    heads = [{"instance": "i1", "seq": 3, "hash": records[2]["hash"]}, {"instance": "i1", "seq": 6, "hash": "x"}]
    (broken,) = verify(records[:4], heads).breaks
    assert broken.seq == 5 and "truncated" in broken.problem


def test_a_window_anchors_on_its_first_record() -> None:
    records = chain(6)[2:]
    assert verify(records, from_start=False).intact
    assert verify(records).breaks[0].seq == 1


def test_relinking_a_record_to_a_different_predecessor_breaks_the_chain() -> None:
    records = chain(4)
    records[2] = seal({**records[2]}, instance="i1", seq=3, prev_hash=audit_chain.GENESIS)
    (broken,) = verify(records).breaks
    assert broken.seq == 3 and "does not follow" in broken.problem
