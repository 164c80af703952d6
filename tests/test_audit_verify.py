from typing import Any

import pytest

from bastion import semconv
from bastion.audit_chain import SpanView, seal, span_fields
from bastion.audit_keys import Signer
from bastion.audit_verify import pin, registered_keys, span_problem, verify
from factories.audit import KEYS, SIGNER, anchor, chain, head, key_row

ATTACKER = Signer.generate()


def first_break(records: list[dict[str, Any]], **kw: Any) -> tuple[int | None, str]:
    report = verify(records, keys=kw.pop("keys", KEYS), **kw)
    (broken,) = report.breaks
    assert not report.intact
    return broken.seq, broken.problem


def test_an_untouched_signed_chain_verifies() -> None:
    records = chain(5) + chain(3, "i2")
    report = verify(reversed(records), [head(records[4])], keys=KEYS)
    assert report.intact and report.records == 8 and report.instances == 2 and report.anchored == {}


def edited(r: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r[2] = {**r[2], "decision": "deny"}
    return r


def rehashed(r: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decision edited and every hash from there on recomputed: only the signatures are wrong."""
    out = r[:2]
    for record in r[2:]:
        fields = {**record, "decision": "deny"} if record["seq"] == 3 else record
        out.append(seal(fields, instance="i1", seq=record["seq"], prev_hash=out[-1]["hash"], signer=ATTACKER))
    return out


def forged_in_place(r: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Record 3 replaced by a forgery linked to record 2: without signatures, record 4 would break first."""
    forged = {
        **seal({"decision": "allow"}, instance="i1", seq=3, prev_hash=r[1]["hash"]),
        "signature": r[2]["signature"],
    }
    return [*r[:2], forged, *r[3:]]


def inserted(r: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [*r, seal({"decision": "allow"}, instance="i1", seq=3, prev_hash=r[1]["hash"], signer=ATTACKER)]


def deleted(r: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return r[:2] + r[3:]


def reordered(r: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r[2], r[3] = {**r[3], "seq": 3}, {**r[2], "seq": 4}
    return r


def unsigned(r: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r[2] = {**r[2], "signature": ""}
    return r


@pytest.mark.parametrize(
    ("tamper", "words"),
    [
        (edited, "does not match its hash"),
        (rehashed, "signature is not valid"),
        (forged_in_place, "signature is not valid"),
        (inserted, "2 different records claim this position"),
        (deleted, "missing"),
        (reordered, "does not match its hash"),
        (unsigned, "not signed"),
    ],
)
def test_each_kind_of_tampering_names_the_first_broken_link_by_its_true_seq(tamper: Any, words: str) -> None:
    seq, problem = first_break(tamper(chain(6)))
    assert seq == 3 and words in problem


def test_a_truncated_tail_is_caught_by_the_newest_signed_head() -> None:
    records = chain(6)
    seq, problem = first_break(records[:4], heads=[head(records[2]), head(records[5])])
    assert seq == 5 and "reaches seq 6" in problem


def test_a_forged_head_is_reported_not_trusted() -> None:
    records = chain(6)
    (broken,) = verify(records, [head(records[3], ATTACKER)], keys=KEYS).breaks
    assert str(broken) == "instance i1: head seq 4: its signature is not valid (forged, or re-hashed after an edit?)"


def test_at_the_same_seq_the_records_own_break_comes_before_its_heads() -> None:
    records = rehashed(chain(6))  # an attacker re-hashing the chain leaves every later head unsigned too
    heads = [head(r, ATTACKER) for r in records[2:]]
    (broken,) = verify(records, heads, keys=KEYS).breaks
    assert str(broken).startswith("instance i1: record seq 3: its signature is not valid")


def test_a_window_anchors_on_its_first_record() -> None:
    records = chain(6)[2:]
    assert verify(records, keys=KEYS, from_start=False).intact
    assert first_break(records)[0] == 1


def test_a_chain_begins_in_a_new_store_after_its_signed_anchor() -> None:
    old_store, new_store = chain(91), chain(20, start=92, prev=chain(91)[-1]["hash"])
    report = verify(new_store, [head(new_store[-1])], anchors=[anchor(old_store[-1])], keys=KEYS)
    assert report.intact and report.anchored == {"i1": 91}


@pytest.mark.parametrize(
    ("drop", "anchor_signer", "expected_seq", "words"),
    [
        (92, SIGNER, 92, "missing"),  # the first record after the anchor deleted
        (100, SIGNER, 100, "missing"),  # one further in
        (None, ATTACKER, 1, "missing"),  # a forged anchor allows nothing
    ],
)
def test_records_missing_after_an_anchor_are_reported(
    drop: int | None, anchor_signer: Signer, expected_seq: int, words: str
) -> None:
    before = chain(91)
    after = [r for r in chain(20, start=92, prev=before[-1]["hash"]) if r["seq"] != drop]
    report = verify(after, anchors=[anchor(before[-1], anchor_signer)], keys=KEYS)
    assert min(b.seq or 0 for b in report.breaks) == expected_seq
    assert any(words in b.problem for b in report.breaks)


def test_a_store_that_held_records_before_its_anchor_lost_them() -> None:
    before = chain(91)
    after = chain(20, start=92, prev=before[-1]["hash"])
    seq, problem = first_break(after, heads=[head(before[49])], anchors=[anchor(before[-1])])
    assert seq == 50 and "begins after the anchor at seq 91" in problem


def test_key_problems_are_reported_per_instance() -> None:
    assert "no public key" in first_break(chain(2), keys={})[1]
    report = verify(chain(2), keys={"i1": [SIGNER.public_key, ATTACKER.public_key]})
    assert [b.seq for b in report.breaks] == [None] and "2 different public keys" in report.breaks[0].problem


def test_registered_keys_must_sign_themselves_and_keep_first_seen_order() -> None:
    forged = {**key_row(signer=ATTACKER), "public_key": SIGNER.public_key}
    keys, bad = registered_keys([key_row(), key_row(signer=ATTACKER), forged, key_row()])
    assert keys == {"i1": [SIGNER.public_key, ATTACKER.public_key]}
    assert len(bad) == 1 and "not signed by itself" in bad[0].problem


def test_pinned_keys_replace_the_stores() -> None:
    keys, problems = pin({"i1": [ATTACKER.public_key], "i9": [SIGNER.public_key]}, {"i1": SIGNER.public_key})
    assert keys == {"i1": [SIGNER.public_key]}
    assert [(p.instance, "not the trusted one" in p.problem) for p in problems] == [("i1", True), ("i9", False)]


def decision_span(**attributes: str) -> SpanView:
    attrs = {semconv.BASTION_AGENT_ID: "bot", semconv.BASTION_DECISION: "deny", semconv.BASTION_POLICY_RULE: "r"}
    return SpanView(5, "a" * 32, "b" * 16, "chat m", "bastion-proxy", 7, "Error", {**attrs, **attributes})


def linked(span: SpanView, signer: Signer = SIGNER) -> dict[str, Any]:
    return seal(span_fields(span), instance="i1", seq=1, prev_hash="0" * 64, signer=signer)


def test_a_span_matches_its_signed_record() -> None:
    span = decision_span()
    assert span_problem(span, [linked(span)], KEYS) is None


@pytest.mark.parametrize(
    ("shown", "words"),
    [
        ({semconv.BASTION_DECISION: "allow"}, "differs from its signed record in decision"),
        ({semconv.GEN_AI_USAGE_INPUT_TOKENS: "1"}, "what the view shows"),
    ],
)
def test_a_span_edited_in_the_store_no_longer_matches(shown: dict[str, str], words: str) -> None:
    record = linked(decision_span())
    problem = span_problem(decision_span(**shown), [record], KEYS)
    assert problem is not None and words in problem


def test_a_span_without_an_authentic_record_is_unverified() -> None:
    span = decision_span()
    assert span_problem(span, [], KEYS) == "no signed audit record links this decision"
    problem = span_problem(span, [linked(span, ATTACKER)], KEYS)
    assert problem is not None and "signature is not valid" in problem
