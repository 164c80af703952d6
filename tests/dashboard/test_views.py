from bastion.dashboard import views


def test_a_row_says_whether_it_matches_a_signed_audit_link() -> None:
    items = [
        {"trace_id": "a" * 32, "timestamp": "2026-01-02T03:04:05.000006Z", "verified": True, "unverified_reason": None},
        {"trace_id": "b" * 32, "timestamp": "2026-01-02T03:04:05Z", "verified": False, "unverified_reason": "edited"},
        {"trace_id": "c" * 32},  # a collector that does not say: not trusted
    ]
    assert [r["Audit"] for r in views.audit_rows(items)] == [views.SIGNED, views.UNVERIFIED, views.UNVERIFIED]
    assert views.unverified(items) == [
        f"2026-01-02 03:04:05.000 trace {'b' * 32}: edited",
        f" trace {'c' * 32}: unknown",
    ]
