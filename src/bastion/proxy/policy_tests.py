"""`bastion policy test`: run a YAML table of calls against their expected decisions.

cases:
  - name: small payments to known payees are allowed
    agent: demo-agent
    role: assistant
    object: tool:send_money
    action: call
    args: {amount: 50, recipient: alice@example.com}
    expect: allow                      # allow | deny | review
    rule: small-payments-to-known-payees   # optional: the rule that must decide
  - name: a payee named only by a fetched page is held
    agent: demo-agent
    role: assistant
    object: tool:send_money
    action: call
    args: {amount: 50, recipient: mallory@evil.example}
    provenance: {recipient: {source: tool, untrusted: true, tools: [fetch_page]}}   # optional
    session: [[tool:invite_user, {user: dora@example.com}]]   # optional: earlier calls
    expect: review

Without ``provenance`` a case's arguments are of unknown origin (so untrusted); without ``session``
no call came before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from bastion.proxy.decision import Effect, PolicyRequest
from bastion.proxy.policy import PolicyEngine
from bastion.proxy.provenance import Provenance, unknown_provenance
from bastion.proxy.session import SessionFacts


class CaseError(ValueError):
    """A test file is malformed; the message names the file and the case."""


@dataclass(frozen=True)
class Case:
    name: str
    request: PolicyRequest
    expect: Effect
    rule: str | None


def load_cases(path: Path) -> list[Case]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise CaseError(f"{path}: {e}") from e
    entries = raw.get("cases") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise CaseError(f"{path}: expected a mapping with a 'cases' list")
    return [_case(path, i, entry) for i, entry in enumerate(entries, start=1)]


def _case(path: Path, number: int, raw: Any) -> Case:
    where = f"{path}: case {number}"
    if not isinstance(raw, dict):
        raise CaseError(f"{where}: expected a mapping")
    try:
        name = str(raw.get("name") or f"case {number}")
        args = raw.get("args") or {}
        if not isinstance(args, dict):
            raise CaseError(f"{where} ({name}): args must be a mapping")
        prov = Provenance.from_record(raw["provenance"], args) if "provenance" in raw else unknown_provenance(args)
        session = SessionFacts.from_record(raw.get("session"))
        request = PolicyRequest(
            str(raw["agent"]), str(raw.get("role", "")), str(raw["object"]), str(raw["action"]), args, prov, session
        )
        expect = Effect(str(raw["expect"]))
    except KeyError as e:
        raise CaseError(f"{where}: missing key {e.args[0]!r}") from None
    except ValueError as e:
        if isinstance(e, CaseError):
            raise
        raise CaseError(f"{where}: expect must be allow, deny or review, not {raw.get('expect')!r}") from None
    return Case(name, request, expect, str(raw["rule"]) if raw.get("rule") else None)


def run(engine: PolicyEngine, files: list[Path], out: TextIO) -> int:
    """Print one line per case; return the number of failures."""
    failures = total = 0
    for path in files:
        for case in load_cases(path):
            total += 1
            decision = engine.decide(case.request)
            ok = decision.effect is case.expect and (case.rule is None or decision.rule == case.rule)
            if ok:
                print(f"PASS  {path.name}: {case.name}", file=out)
                continue
            failures += 1
            wanted = case.expect.value + (f" by rule '{case.rule}'" if case.rule else "")
            print(
                f"FAIL  {path.name}: {case.name}\n"
                f"      expected {wanted}, got {decision.effect.value} by rule '{decision.rule}' ({decision.reason})",
                file=out,
            )
    print(f"{total - failures} passed, {failures} failed (policy version {engine.version})", file=out)
    return failures
