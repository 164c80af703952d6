"""``bastion approvers``, ``bastion approvals`` and ``bastion agents``: human control from a shell.

Deciding and intervening go through the collector's API with an approver token
(``--token`` or ``BASTION_APPROVER_TOKEN``), never through the store.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bastion import settings as s

TOKEN_ENV = "BASTION_APPROVER_TOKEN"


def _approvers_add(args: argparse.Namespace) -> int:
    from bastion.approvers import FILE_NAME, add_approver

    path = args.policies / FILE_NAME
    token = add_approver(path, args.name)
    print(f"Added approver {args.name!r} to {path}. The token is shown only once:")
    print(token)
    return 0


def _approvers_list(args: argparse.Namespace) -> int:
    from bastion.approvers import FILE_NAME, list_approvers

    for approver in list_approvers(args.policies / FILE_NAME):
        print(f"{approver.id}  {approver.name}")
    return 0


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    headers = {"authorization": f"Bearer {args.token}"} if getattr(args, "token", "") else {}
    url = args.collector_url.rstrip("/") + path
    try:
        r = httpx.request(method, url, json=body, headers=headers, timeout=10.0)
    except httpx.HTTPError as e:
        raise SystemExit(f"Cannot reach the collector at {args.collector_url}: {e}") from None
    if not r.is_success:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text[:200]
        raise SystemExit(f"The collector answered {r.status_code}: {message}")
    return r.json()


def _when(moment: float | None) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _approvals_list(args: argparse.Namespace) -> int:
    status = None if args.status == "all" else args.status
    items = _call(args, "GET", "/api/approvals" + (f"?status={status}" if status else ""))["items"]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    for a in items:
        arguments = json.dumps(a.get("arguments"), default=str)[:80]
        who = f"  by {a['approver']}: {a.get('decision_reason') or ''}" if a.get("approver") else ""
        print(
            f"{a['id']}  {a['status']:<9} {_when(a['created'])}  {a['agent_id']}  {a['action']} {a['target']} "
            f"{arguments}  rule={a['rule']}{who}"
        )
    if not items:
        print("No approvals.")
    return 0


def _decide(args: argparse.Namespace, decision: str) -> int:
    code = 0
    for approval_id in args.ids:
        try:
            record = _call(
                args, "POST", f"/api/approvals/{approval_id}/decision", {"decision": decision, "reason": args.reason}
            )
        except SystemExit as e:
            print(f"{approval_id}: {e}", file=sys.stderr)
            code = 1
            continue
        print(f"{approval_id}: {record['status']} by {record['approver']}")
    return code


def _agents_list(args: argparse.Namespace) -> int:
    for a in _call(args, "GET", "/api/agents")["items"]:
        waiting = sum(g["delivered"] is None for g in a.get("guidance", []))
        state = "suspended" if a["suspended"] else "active"
        by, reason = a.get("by") or "", a.get("reason") or ""
        print(f"{a['agent_id']}  {state}  by={by}  reason={reason}  guidance waiting={waiting}")
    return 0


def _agents_suspend(args: argparse.Namespace, action: str) -> int:
    record = _call(args, "POST", f"/api/agents/{args.agent}/{action}", {"reason": args.reason})
    print(f"Agent {args.agent} is {'suspended' if record['suspended'] else 'active'} (by {record['by']}).")
    return 0


def _agents_guide(args: argparse.Namespace) -> int:
    guidance = _call(args, "POST", f"/api/agents/{args.agent}/guidance", {"text": args.message})
    print(f"Guidance {guidance['id']} waits for agent {args.agent}'s next model call.")
    return 0


def _client_options(p: argparse.ArgumentParser, token: bool) -> None:
    s.add_collector_url_option(p)
    if token:
        s.add_option(p, "--token", env=TOKEN_ENV, default="", help="approver token (bastion approvers add)")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    approvers = commands.add_parser("approvers", help="manage the people who may approve held calls")
    actions = approvers.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add an approver; the token is printed once and stored hashed")
    add.add_argument("--name", required=True, help="the approver's name, recorded with each decision")
    add.set_defaults(run=_approvers_add)
    listing = actions.add_parser("list", help="list approvers (never their tokens)")
    listing.set_defaults(run=_approvers_list)
    for p in (add, listing):
        s.add_option(p, "--policies", env="BASTION_POLICIES", default=Path("policies"), cast=Path, help="policies dir")

    approvals = commands.add_parser("approvals", help="list, approve and deny held calls")
    actions = approvals.add_subparsers(dest="action", required=True)
    show = actions.add_parser("list", help="list approvals, newest first")
    show.add_argument(
        "--status", default="pending", help="pending (default), approved, denied, timeout, abandoned, all"
    )
    show.add_argument("--json", action="store_true", help="print the records as JSON")
    show.set_defaults(run=_approvals_list)
    _client_options(show, token=False)
    for name, decision in (("approve", "approve"), ("deny", "deny")):
        p = actions.add_parser(name, help=f"{name} held calls (needs an approver token)")
        p.add_argument("ids", nargs="+", help="approval ids")
        p.add_argument("--reason", default="", help="why; recorded in the audit trail and shown to the agent")
        p.set_defaults(run=lambda a, d=decision: _decide(a, d))
        _client_options(p, token=True)

    agents = commands.add_parser("agents", help="suspend, resume and guide agents")
    actions = agents.add_subparsers(dest="action", required=True)
    shown = actions.add_parser("list", help="agents that were suspended or guided")
    shown.set_defaults(run=_agents_list)
    _client_options(shown, token=False)
    for name in ("suspend", "resume"):
        p = actions.add_parser(name, help=f"{name} an agent (kill switch; needs an approver token)")
        p.add_argument("agent", help="agent id")
        p.add_argument("--reason", default="", help="why; recorded in the audit trail")
        p.set_defaults(run=lambda a, n=name: _agents_suspend(a, n))
        _client_options(p, token=True)
    guide = actions.add_parser("guide", help="send guidance into the agent's next model call, once")
    guide.add_argument("agent", help="agent id")
    guide.add_argument("message", help="the guidance text")
    guide.set_defaults(run=_agents_guide)
    _client_options(guide, token=True)
