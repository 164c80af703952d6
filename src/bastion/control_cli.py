"""``bastion operators``, ``bastion approvals`` and ``bastion agents``: human control from a shell.

Operators (``bastion operators add --name alice --role viewer|approver|admin``) are written to
``policies/operators.yaml`` as hashed tokens; ``bastion approvers add`` is kept as the approver role.
Everything else goes through the collector's API with an operator token (``BASTION_TOKEN``, or
``BASTION_APPROVER_TOKEN`` as before, or ``--token-file``), never through the store.
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
from bastion.operators import FILE_NAME, OPERATOR_ROLES, Role, add_operator, list_operators, parse_role, remove_operator


def _operators_path(args: argparse.Namespace) -> Path:
    chosen: Path | None = args.operators_file
    return chosen or Path(args.policies) / FILE_NAME


def _operators_add(args: argparse.Namespace) -> int:
    path = _operators_path(args)
    try:
        role = parse_role(args.role)
        token = add_operator(path, args.name, role)
    except ValueError as e:
        raise SystemExit(f"bastion operators add: {e}") from None
    print(f"Added {role} {args.name!r} to {path}. The token is shown only once:")
    print(token)
    return 0


def _approvers_add(args: argparse.Namespace) -> int:
    args.role = Role.APPROVER
    return _operators_add(args)


def _operators_list(args: argparse.Namespace) -> int:
    for operator in list_operators(_operators_path(args)):
        if getattr(args, "only", None) in (None, operator.role):
            print(f"{operator.id}  {operator.role:<8}  {operator.name}")
    return 0


def _operators_remove(args: argparse.Namespace) -> int:
    removed = remove_operator(_operators_path(args), args.which)
    if not removed:
        raise SystemExit(f"bastion operators remove: no operator {args.which!r} in {_operators_path(args)}")
    print(f"Removed {', '.join(removed)}; their tokens stop working at once.")
    return 0


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    headers = s.collector_headers(s.operator_token(args))
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
        arguments = json.dumps(a.get("arguments_clear", a.get("arguments")), default=str)[:80]
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


def _client_options(p: argparse.ArgumentParser) -> None:
    s.add_part(p, s.CLIENT)


def _file_options(p: argparse.ArgumentParser) -> None:
    s.add_settings(p, s.POLICIES, s.OPERATORS_FILE)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    operators = commands.add_parser("operators", help="manage who may use the collector API and the dashboard")
    actions = operators.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add an operator; the token is printed once and stored hashed")
    add.add_argument("--name", required=True, help="the operator's name, recorded with each decision")
    add.add_argument("--role", required=True, choices=[str(r) for r in OPERATOR_ROLES], help="what they may do")
    add.set_defaults(run=_operators_add)
    listing = actions.add_parser("list", help="list operators (never their tokens)")
    listing.set_defaults(run=_operators_list)
    remove = actions.add_parser("remove", help="remove an operator by id or name")
    remove.add_argument("which", help="operator id or name")
    remove.set_defaults(run=_operators_remove)
    for p in (add, listing, remove):
        _file_options(p)

    approvers = commands.add_parser("approvers", help="add and list approvers (operators with the approver role)")
    actions = approvers.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add an approver; the token is printed once and stored hashed")
    add.add_argument("--name", required=True, help="the approver's name, recorded with each decision")
    add.set_defaults(run=_approvers_add)
    listing = actions.add_parser("list", help="list approvers (never their tokens)")
    listing.set_defaults(run=_operators_list, only=Role.APPROVER)
    for p in (add, listing):
        _file_options(p)

    approvals = commands.add_parser("approvals", help="list, approve and deny held calls")
    actions = approvals.add_subparsers(dest="action", required=True)
    show = actions.add_parser("list", help="list approvals, newest first")
    show.add_argument(
        "--status", default="pending", help="pending (default), approved, denied, timeout, abandoned, all"
    )
    show.add_argument("--json", action="store_true", help="print the records as JSON")
    show.set_defaults(run=_approvals_list)
    _client_options(show)
    for name, decision in (("approve", "approve"), ("deny", "deny")):
        p = actions.add_parser(name, help=f"{name} held calls (needs an approver token)")
        p.add_argument("ids", nargs="+", help="approval ids")
        p.add_argument("--reason", default="", help="why; recorded in the audit trail and shown to the agent")
        p.set_defaults(run=lambda a, d=decision: _decide(a, d))
        _client_options(p)

    agents = commands.add_parser("agents", help="suspend, resume and guide agents")
    actions = agents.add_subparsers(dest="action", required=True)
    shown = actions.add_parser("list", help="agents that were suspended or guided")
    shown.set_defaults(run=_agents_list)
    _client_options(shown)
    for name in ("suspend", "resume"):
        p = actions.add_parser(name, help=f"{name} an agent (kill switch; needs an approver token)")
        p.add_argument("agent", help="agent id")
        p.add_argument("--reason", default="", help="why; recorded in the audit trail")
        p.set_defaults(run=lambda a, n=name: _agents_suspend(a, n))
        _client_options(p)
    guide = actions.add_parser("guide", help="send guidance into the agent's next model call, once")
    guide.add_argument("agent", help="agent id")
    guide.add_argument("message", help="the guidance text")
    guide.set_defaults(run=_agents_guide)
    _client_options(guide)
