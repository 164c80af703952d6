"""Budget windows (UTC day, ISO week from Monday, calendar month) and the budgets section."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bastion import budgets
from bastion.budgets import Budget
from bastion.files import ConfigError


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        ("day", "2026-12-02 15:55:00", "2026-12-02", "2026-12-03"),
        ("day", "2026-12-31 23:59:59", "2026-12-31", "2027-01-01"),
        ("week", "2026-12-02 15:55:00", "2026-11-30", "2026-12-07"),  # a Wednesday: since Monday
        ("week", "2026-11-30 00:00:00", "2026-11-30", "2026-12-07"),
        ("week", "2026-12-06 23:59:59", "2026-11-30", "2026-12-07"),
        ("month", "2026-12-02 15:55:00", "2026-12-01", "2027-01-01"),
        ("month", "2028-02-29 12:00:00", "2028-02-01", "2028-03-01"),
        ("month", "2026-01-31 12:00:00", "2026-01-01", "2026-02-01"),
    ],
)
def test_windows_are_utc_calendar_periods(period: str, now: str, start: str, end: str) -> None:
    assert budgets.window(period, ts(now)) == (ts(start + " 00:00:00"), ts(end + " 00:00:00"))


def test_a_budget_section_is_parsed_with_defaults() -> None:
    parsed = budgets.parse(
        {
            "daily": {"usd": 5},
            "team": {"per": "role", "period": "month", "tokens": 100000, "alert_at": 0.9, "local_allowance": 500},
            "one-key": {"per": "key", "period": "week", "usd": 1.5, "only": ["k1"]},
        }
    )
    assert parsed == (
        Budget("daily", "agent", "day", "usd", 5.0, 0.8, 0.25),
        Budget("team", "role", "month", "tokens", 100000.0, 0.9, 500.0),
        Budget("one-key", "key", "week", "usd", 1.5, 0.8, 1.5 * 0.05, ("k1",)),
    )
    assert parsed[0].rule == "budget:daily"
    assert parsed[2].applies("k1") and not parsed[2].applies("k2") and parsed[0].applies("anyone")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("[daily]", "budgets must map budget names"),
        ("{daily: {per: team, usd: 1}}", "budgets.daily.per has value 'team'"),
        ("{daily: {period: year, usd: 1}}", "budgets.daily.period has value 'year'"),
        ("{daily: {}}", "budgets.daily needs exactly one limit"),
        ("{daily: {usd: 1, tokens: 5}}", "budgets.daily needs exactly one limit"),
        ("{daily: {usd: 0}}", "budgets.daily.usd has value 0"),
        ("{daily: {usd: 1, alert_at: 1.5}}", "budgets.daily.alert_at has value 1.5"),
        ("{daily: {usd: 1, limit: 2}}", "budgets.daily has unknown keys ['limit']"),
        ("{'a b': {usd: 1}}", "budgets.a b: the name"),
    ],
)
def test_a_bad_budgets_section_names_the_key(tmp_path: Path, section: str, message: str) -> None:
    (tmp_path / "bastion.yaml").write_text(f"budgets: {section}\n")
    with pytest.raises(ConfigError, match=r"bastion\.yaml") as e:
        budgets.load(tmp_path)
    assert message in str(e.value)


def test_no_section_no_budgets(tmp_path: Path) -> None:
    assert budgets.load(tmp_path) == ()
    (tmp_path / "bastion.yaml").write_text("routes: []\n")
    assert budgets.load(tmp_path) == ()
