"""`bastion policy replay`: decide stored tool calls again with a candidate policy, and say what changes.

The decision records come from the collector API (``/api/audit/spans``, a viewer's operator token):
every decided tool call, model-emitted or over MCP, keeps the policy object and action it was decided
as, its arguments (redacted as everything stored, so a condition on a redacted value sees the
redacted value), where they came from and the session's earlier calls (``semconv``:
``bastion.policy.object``, ``bastion.tool.arguments``, ``bastion.provenance``,
``bastion.session.calls``). Each is decided with the policy in ``--policies`` and compared with the
decision it got; the table counts each change (``allow -> review``) per rule of the candidate, with
an example. Records without those attributes (model and HTTP calls, or tool calls recorded before
they existed) are counted as skipped.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bastion import semconv
from bastion.proxy.decision import Effect, PolicyRequest
from bastion.proxy.policy import PolicyEngine
from bastion.proxy.provenance import Provenance
from bastion.proxy.session import SessionFacts

EXAMPLE_CHARS = 120


@dataclass(frozen=True)
class Stored:
    """One stored decision of a tool call, as replay reads it."""

    timestamp: str
    request: PolicyRequest
    effect: str
    rule: str


@dataclass(frozen=True)
class Change:
    stored: Stored
    effect: Effect
    rule: str

    @property
    def key(self) -> tuple[str, str, str]:
        return f"{self.stored.effect} -> {self.effect.value}", self.rule, self.stored.rule


def stored(item: Mapping[str, Any]) -> Stored | None:
    """A decision span (an ``/api/audit/spans`` item) as a stored decision; None when it lacks what a
    decision needs."""
    attrs = item.get("attributes") or {}
    obj, raw_args = attrs.get(semconv.BASTION_POLICY_OBJECT), attrs.get(semconv.BASTION_TOOL_ARGUMENTS)
    effect = attrs.get(semconv.BASTION_DECISION)
    if not obj or raw_args is None or effect is None:
        return None
    try:
        args = json.loads(raw_args)
        prov_record = json.loads(attrs[semconv.BASTION_PROVENANCE]) if semconv.BASTION_PROVENANCE in attrs else None
        session = json.loads(attrs.get(semconv.BASTION_SESSION_CALLS, "[]"))
    except ValueError:
        return None
    if not isinstance(args, dict):
        return None
    request = PolicyRequest(
        str(attrs.get(semconv.BASTION_AGENT_ID, "")),
        str(attrs.get(semconv.BASTION_AGENT_ROLE, "")),
        str(obj),
        str(attrs.get(semconv.BASTION_POLICY_ACTION, "call")),
        args,
        Provenance.from_record(prov_record, args) if prov_record is not None else None,
        SessionFacts.from_record(session),
    )
    timestamp = item.get("timestamp", "")
    return Stored(str(timestamp), request, str(effect), str(attrs.get(semconv.BASTION_POLICY_RULE, "")))


def replay(
    engine: PolicyEngine, items: Iterable[Mapping[str, Any]], agent: str | None = None
) -> tuple[int, int, list[Change]]:
    """Decide every stored tool call again: (decided, skipped, changes)."""
    decided = skipped = 0
    changes: list[Change] = []
    for item in items:
        found = stored(item)
        if found is None:
            skipped += 1
            continue
        if agent is not None and found.request.agent_id != agent:
            continue
        decided += 1
        decision = engine.decide(found.request)
        if decision.effect.value != found.effect:
            changes.append(Change(found, decision.effect, decision.rule))
    return decided, skipped, changes


def report(decided: int, skipped: int, changes: list[Change], version: str, out: TextIO) -> None:
    counts = Counter(c.key for c in changes)
    examples = {c.key: c for c in reversed(changes)}
    print(
        f"Replayed {decided} stored tool-call decisions with policy version {version} "
        f"({skipped} records without a tool call's arguments skipped): {len(changes)} would change.",
        file=out,
    )
    if not changes:
        return
    rows = [("change", "by rule", "was rule", "calls", "example")]
    for key, count in counts.most_common():
        c = examples[key]
        args = json.dumps(c.stored.request.args, sort_keys=True)
        example = f"{c.stored.timestamp} {c.stored.request.agent_id} {c.stored.request.obj} {args}"
        rows.append((*key, str(count), example[:EXAMPLE_CHARS]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row[:4], widths, strict=True)) + "  " + row[4], file=out)


def run(policies: Path, items: Iterable[Mapping[str, Any]], out: TextIO, *, agent: str | None = None) -> list[Change]:
    engine = PolicyEngine(policies)
    decided, skipped, changes = replay(engine, items, agent)
    report(decided, skipped, changes, engine.version, out)
    return changes
