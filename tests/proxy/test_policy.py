from pathlib import Path

import pytest

from bastion.proxy.decision import Effect, PolicyRequest
from bastion.proxy.policy import PolicyEngine
from factories.proxy import policies_dir


@pytest.fixture
def engine(tmp_path: Path) -> PolicyEngine:
    return PolicyEngine(policies_dir(tmp_path))


@pytest.mark.parametrize(
    ("role", "obj", "act", "effect", "rule"),
    [
        ("assistant", "model:scripted-small", "chat", Effect.ALLOW, "assistant-scripted-models"),
        ("assistant", "model:scripted-large", "chat", Effect.DENY, "no-large-models"),
        ("assistant", "model:gpt-4o", "chat", Effect.DENY, "default-deny"),
        ("analyst", "model:scripted-embed", "embeddings", Effect.ALLOW, "analyst-embeddings"),
        ("analyst", "model:scripted-small", "chat", Effect.DENY, "default-deny"),
        ("", "model:scripted-small", "chat", Effect.DENY, "default-deny"),
    ],
)
def test_bundled_policy_decisions_carry_the_rule(
    engine: PolicyEngine, role: str, obj: str, act: str, effect: Effect, rule: str
) -> None:
    decision = engine.decide(PolicyRequest("agent-1", role, obj, act))
    assert (decision.effect, decision.rule) == (effect, rule)
    assert decision.policy_version == engine.version and len(engine.version) == 12
    assert rule in decision.reason or decision.rule == "default-deny"


def test_deny_overrides_allow_whatever_the_order(tmp_path: Path) -> None:
    rules = "p, role:r, model:*, *, allow, all,\np, agent-1, model:x, chat, deny, not-x,\n"
    engine = PolicyEngine(policies_dir(tmp_path, rules))
    assert engine.decide(PolicyRequest("agent-1", "r", "model:x", "chat")).rule == "not-x"
    assert engine.decide(PolicyRequest("agent-1", "r", "model:y", "chat")).allowed


def test_version_changes_with_the_rules(tmp_path: Path) -> None:
    a = PolicyEngine(policies_dir(tmp_path / "a")).version
    b = PolicyEngine(policies_dir(tmp_path / "b", "p, role:r, model:*, *, allow, all,\n")).version
    assert a != b
