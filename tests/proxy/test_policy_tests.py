import io
from pathlib import Path

import pytest

from bastion.proxy import limits
from bastion.proxy.policy import PolicyEngine
from bastion.proxy.policy_tests import CaseError, load_cases, run
from factories.proxy import policies_dir

CASES = """
cases:
  - {name: three are fine, agent: a, role: assistant, object: "tool:tools/get_weather", action: call,
     args: {city: Paris}, repeat: 2, expect: allow}
  - {name: a loop, agent: a, role: assistant, object: "tool:tools/get_weather", action: call,
     args: {city: Paris}, repeat: 3, expect: deny, rule: "limit:runaway:repeat"}
  - {name: a long conversation, agent: a, role: assistant, object: "model:scripted-small", action: chat,
     repeat: 6, expect: deny, rule: "limit:runaway:steps"}
  - {name: a burst over the rate, agent: b, role: assistant, object: "model:scripted-small", action: chat,
     repeat: 4, expect: deny, rule: "limit:rate:agent"}
"""


def test_cases_state_the_limits_deterministic_outcomes(tmp_path: Path) -> None:
    policies = policies_dir(tmp_path)
    (tmp_path / "cases.yaml").write_text(CASES)
    settings = limits.parse(
        Path("bastion.yaml"),
        {"agents": {"a": {"max_repeats": 2, "max_steps": 5}, "b": {"requests_per_minute": 3}}},
    )
    out = io.StringIO()
    failures = run(PolicyEngine(policies), [tmp_path / "cases.yaml"], out, settings)
    assert failures == 0, out.getvalue()
    # Without the limits, the loop, the long conversation and the burst are allowed: three cases fail.
    assert run(PolicyEngine(policies), [tmp_path / "cases.yaml"], io.StringIO()) == 3


def test_repeat_must_be_a_positive_integer(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases: [{agent: a, object: 'model:m', action: chat, expect: allow, repeat: 0}]")
    with pytest.raises(CaseError, match="repeat has value 0"):
        load_cases(bad)
