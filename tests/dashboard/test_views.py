import pytest

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


def test_a_missing_value_is_an_empty_cell_never_none_or_nan() -> None:
    (row,) = views.audit_rows([{}])
    assert set(row.values()) == {"", views.UNVERIFIED}
    assert [views.cell(v) for v in (None, float("nan"), 0, 1.5, "x")] == ["", "", "0", "1.5", "x"]
    (span,) = views.span_rows([(0, {})])
    assert set(span.values()) == {""}


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            {"operation": "execute_tool", "tool_name": "send_money", "mcp_method": "tools/call"},
            "execute_tool send_money",
        ),
        ({"operation": "apply_guardrail", "tool_name": "delete_repo"}, "apply_guardrail delete_repo"),
        ({"mcp_method": "tools/list"}, "tools/list"),
        ({"operation": "chat"}, "chat"),
        ({}, ""),
    ],
)
def test_the_operation_names_the_tool_or_the_mcp_method(item: dict[str, str], expected: str) -> None:
    assert views.operation(item) == expected


@pytest.mark.parametrize(
    ("decision", "approval", "approver", "expected"),
    [
        ("allow", None, None, "✅ allow"),
        ("allow", "approved", "bob", "✅ approved by bob"),
        ("deny", "denied", "bob", "⛔ denied by bob"),
        ("deny", "timeout", None, "⛔ deny (approval timeout)"),
        (None, None, None, ""),
    ],
)
def test_a_held_call_shows_how_its_approval_ended(
    decision: str | None, approval: str | None, approver: str | None, expected: str
) -> None:
    assert views.decision_label(decision, approval, approver) == expected
