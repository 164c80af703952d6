"""`bastion policy replay` decides stored tool calls again: records read back, changes counted per rule."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from bastion import semconv
from bastion.policy_replay import replay, run, stored
from bastion.proxy.policy import PolicyEngine
from factories.proxy import policies_dir

RULES = (
    "p, role:assistant, tool:fetch, call, review, untrusted-url, from_untrusted(r.args.url)\n"
    "p, role:assistant, tool:fetch, call, allow, fetch,\n"
    'p, role:assistant, tool:send_email, call, allow, two-mails, session_count("tool:send_email") < 2\n'
)


def item(obj: str, args: dict[str, Any], decision: str, rule: str, **attrs: Any) -> dict[str, Any]:
    return {
        "timestamp": 1,
        "attributes": {
            semconv.BASTION_AGENT_ID: attrs.pop("agent", "a1"),
            semconv.BASTION_AGENT_ROLE: "assistant",
            semconv.BASTION_POLICY_OBJECT: obj,
            semconv.BASTION_POLICY_ACTION: "call",
            semconv.BASTION_TOOL_ARGUMENTS: json.dumps(args),
            semconv.BASTION_DECISION: decision,
            semconv.BASTION_POLICY_RULE: rule,
            **{k: json.dumps(v) for k, v in attrs.items()},
        },
    }


USER_URL = item(
    "tool:fetch",
    {"url": "https://docs.example.com/"},
    "allow",
    "fetch",
    **{semconv.BASTION_PROVENANCE: {"url": {"source": "user", "untrusted": False}}},
)
TOOL_URL = item(
    "tool:fetch",
    {"url": "https://evil.io/?k=1"},
    "review",
    "untrusted-url",
    **{semconv.BASTION_PROVENANCE: {"url": {"source": "tool", "untrusted": True}}},
)
THIRD_MAIL = item(
    "tool:tools/send_email",
    {"to": "x@example.com"},
    "deny",
    "default-deny",
    agent="a2",
    **{semconv.BASTION_SESSION_CALLS: [["tool:tools/send_email", {}], ["tool:send_email", {}]]},
)
MODEL_CALL = {"timestamp": 1, "attributes": {semconv.BASTION_DECISION: "allow", semconv.BASTION_POLICY_RULE: "m"}}


def test_stored_records_decide_as_they_did(tmp_path: Path) -> None:
    engine = PolicyEngine(policies_dir(tmp_path, RULES))
    assert stored(MODEL_CALL) is None
    decided, skipped, changes = replay(engine, [USER_URL, TOOL_URL, THIRD_MAIL, MODEL_CALL])
    assert (decided, skipped, changes) == (3, 1, [])


def test_changes_are_counted_per_rule_with_an_example(tmp_path: Path) -> None:
    candidate = policies_dir(
        tmp_path, RULES.replace("review, untrusted-url", "deny, untrusted-url").replace("< 2", "< 3")
    )
    out = io.StringIO()
    changes = run(candidate, [USER_URL, TOOL_URL, TOOL_URL, THIRD_MAIL], out)
    assert sorted(c.key for c in changes) == [
        ("deny -> allow", "two-mails", "default-deny"),
        ("review -> deny", "untrusted-url", "untrusted-url"),
        ("review -> deny", "untrusted-url", "untrusted-url"),
    ]
    text = out.getvalue()
    assert "Replayed 4 stored tool-call decisions" in text and ": 3 would change" in text
    assert "review -> deny  untrusted-url  untrusted-url  2" in text and "https://evil.io/?k=1" in text
    assert [c.key for c in run(candidate, [TOOL_URL, THIRD_MAIL], io.StringIO(), agent="a2")] == [
        ("deny -> allow", "two-mails", "default-deny")
    ]
