"""``bastion spend`` and ``bastion budgets``: what agents spent, and budgets, through the collector's API.

``bastion spend --by agent|role|key --period day|week|month`` prints cost and tokens per subject and
period (a viewer token). ``bastion budgets list`` prints each budget's spend in the current period;
``bastion budgets raise NAME SUBJECT --to 20`` (or ``--by 5``) raises one subject's limit until the
period resets (an admin token).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from bastion import budgets
from bastion.control_cli import _call, _client_options


def _amount(unit: str, value: float) -> str:
    return f"${value:,.4f}" if unit == budgets.USD else f"{value:,.0f} tokens"


def _spend(args: argparse.Namespace) -> int:
    query = {"by": args.by, "period": args.period, **({"since": args.since} if args.since else {})}
    found: dict[str, Any] = _call(args, "GET", "/api/spend?" + urlencode(query))
    items = found["items"]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print("No model calls with usage in this range.")
        return 0
    print(f"{'period':<11} {args.by:<24} {'cost (USD)':>12} {'input':>10} {'output':>10} {'calls':>7}  unpriced")
    for item in items:
        print(
            f"{item['period_start'][:10]:<11} {item[args.by]:<24} {item['cost_usd']:>12.4f} "
            f"{item['input_tokens']:>10} {item['output_tokens']:>10} {item['calls']:>7}  {item['unpriced_calls']}"
        )
    return 0


def _when(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _budgets_list(args: argparse.Namespace) -> int:
    state: dict[str, Any] = _call(args, "GET", "/api/budgets")
    if args.json:
        print(json.dumps(state, indent=2))
        return 0
    if not state["budgets"]:
        print("No budgets in the collector's bastion.yaml.")
    for b in state["budgets"]:
        print(
            f"{b['name']}: {_amount(b['unit'], b['limit'])} per {b['per']} per {b['period']} "
            f"(alert at {b['alert_at']:.0%}; resets {_when(b['window_end'])})"
        )
        for s in b["subjects"]:
            share = s["spent"] / s["limit"] if s["limit"] else 0.0
            raised = "  (raised)" if s["raised"] else ""
            spent, limit = _amount(b["unit"], s["spent"]), _amount(b["unit"], s["limit"])
            print(f"  {s['subject']:<24} {spent} of {limit} ({share:.0%}){raised}")
    return 0


def _budgets_raise(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"subject": args.subject, "reason": args.reason}
    body.update({"to": args.to} if args.to is not None else {"by": args.by})
    record: dict[str, Any] = _call(args, "POST", f"/api/budgets/{args.name}/raise", body)
    print(
        f"Budget {args.name} for {args.subject}: {_amount(record['unit'], record['previous_limit'])} -> "
        f"{_amount(record['unit'], record['limit'])} until {_when(record['window_end'])} (by {record['by']})."
    )
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    spend = commands.add_parser("spend", help="cost and tokens of model calls per agent, role or key")
    spend.add_argument("--by", choices=["agent", "role", "key"], default="agent", help="sum per (default agent)")
    spend.add_argument("--period", choices=["day", "week", "month"], default="day", help="per UTC period")
    spend.add_argument("--since", default="", help="ISO-8601 start (default: 30 days ago)")
    spend.add_argument("--json", action="store_true", help="print the rows as JSON")
    spend.set_defaults(run=_spend)
    _client_options(spend)

    group = commands.add_parser("budgets", help="budgets' spend in the current period; raise a limit")
    actions = group.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="each budget's spend per subject this period")
    listing.add_argument("--json", action="store_true", help="print the collector's answer as JSON")
    listing.set_defaults(run=_budgets_list)
    _client_options(listing)
    raising = actions.add_parser("raise", help="raise a subject's limit until the period resets (admin token)")
    raising.add_argument("name", help="budget name (bastion.yaml budgets:)")
    raising.add_argument("subject", help="the agent, role or key id the budget is per")
    amount = raising.add_mutually_exclusive_group(required=True)
    amount.add_argument("--to", type=float, help="the new limit, in the budget's unit (USD or tokens)")
    amount.add_argument("--by", type=float, help="an amount to add to the current limit")
    raising.add_argument("--reason", default="", help="why; recorded in the audit trail")
    raising.set_defaults(run=_budgets_raise)
    _client_options(raising)
