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

  - name: a loop of the same call is stopped by the limits
    agent: demo-agent
    role: assistant
    object: tool:tools/get_weather
    action: call
    args: {city: Paris}
    repeat: 4                          # the same call made 4 times in one conversation; the last decides
    expect: deny
    rule: limit:runaway:repeat

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
no call came before it. With ``repeat``, the limits of bastion.yaml's ``limits:`` section apply to
the calls the policy allows, as the proxy applies them in one conversation (deterministic outcomes:
the step budget, the repetition detector, and rates, whose clock stands still during a case).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from bastion.proxy.breakers import call_key
from bastion.proxy.decision import Decision, Effect, PolicyRequest
from bastion.proxy.limiter import Attempt, Limiter
from bastion.proxy.limits import LimitSettings
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
    repeat: int = 1


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
        repeat = raw.get("repeat", 1)
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            raise CaseError(f"{where} ({name}): repeat has value {repeat!r}. Not a positive integer.")
    except KeyError as e:
        raise CaseError(f"{where}: missing key {e.args[0]!r}") from None
    except ValueError as e:
        if isinstance(e, CaseError):
            raise
        raise CaseError(f"{where}: expect must be allow, deny or review, not {raw.get('expect')!r}") from None
    return Case(name, request, expect, str(raw["rule"]) if raw.get("rule") else None, repeat)


def decide(engine: PolicyEngine, case: Case, limits: LimitSettings | None) -> Decision:
    """The decision on the case's last call: the policy's, then the limits' on calls it allows."""
    decision = engine.decide(case.request)  # the policy is the same for every repeat
    if limits is None or not limits.enabled or not decision.allowed:
        return decision
    limiter, request, last = Limiter(limits, clock=lambda: 0.0), case.request, decision
    tool = call_key(request.obj.removeprefix("tool:"), request.args) if request.obj.startswith("tool:") else None
    for _ in range(case.repeat):
        attempt = Attempt(request.agent_id, request.role, "", request.obj, "", f"case:{case.name}", tool)
        _, refusal = limiter.check(attempt)
        last = decision if refusal is None else Decision(Effect.DENY, refusal.rule, refusal.message)
    return last


def run(engine: PolicyEngine, files: list[Path], out: TextIO, limits: LimitSettings | None = None) -> int:
    """Print one line per case; return the number of failures. With ``limits``, calls the policy
    allows also meet the limits (cases with ``repeat``)."""
    failures = total = 0
    for path in files:
        for case in load_cases(path):
            total += 1
            decision = decide(engine, case, limits)
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
