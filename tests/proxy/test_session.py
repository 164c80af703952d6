"""Session facts: counts and history of earlier calls, bounded."""

from __future__ import annotations

from bastion.proxy.session import SessionFacts, SessionStore, conversation_facts


def test_count_and_called_match_objects_as_rules_do() -> None:
    facts = conversation_facts((("invite_user", {"user": "Dora@x.com"}), ("send_email", {"to": "a"})))
    facts = facts.plus("tool:chat/send_email", {"to": "b"})
    assert facts.count("tool:send_email") == 2
    assert facts.count("tool:chat/*") == 1
    assert facts.called("tool:invite_user", "dora@x.com")
    assert not facts.called("tool:invite_user", "eve@x.com")
    assert not facts.called("tool:send_email", "dora@x.com")


def test_record_round_trip() -> None:
    facts = SessionFacts((("tool:a", {"x": 1}),))
    assert SessionFacts.from_record(facts.record()) == facts


def test_store_is_bounded() -> None:
    store = SessionStore(sessions=2, calls=3)
    for i in range(5):
        store.add("s1", "tool:a", {"i": i})
    assert [args["i"] for _, args in store.facts("s1").calls] == [2, 3, 4]
    store.add("s2", "tool:a", {})
    store.add("s3", "tool:a", {})
    assert len(store) == 2 and store.facts("s1") == SessionFacts()
