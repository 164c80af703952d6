from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bastion.proxy.config import ConfigError
from bastion.proxy.pii.config import Action, EntityRule, OnError, load, parse
from support import SESSION_POLICIES

PATH = Path("pii.yaml")
SALT = {"BASTION_PII_SALT": "s" * 16}


def test_actions_per_direction_threshold_and_defaults() -> None:
    config = parse(
        {
            "entities": {
                "EMAIL_ADDRESS": "pseudonymize",
                "PHONE_NUMBER": {"request": "redact", "response": "allow", "threshold": 0.6},
                "US_SSN": {"action": "hash"},
            },
            "routes": {"openai": {"on_error": "allow"}},
            "timeout_ms": 0,
        },
        PATH,
        environ=SALT,
    )
    assert config.entities["EMAIL_ADDRESS"] == EntityRule(Action.PSEUDONYMIZE, Action.PSEUDONYMIZE, 0.5)
    assert config.entities["PHONE_NUMBER"] == EntityRule(Action.REDACT, Action.ALLOW, 0.6)
    assert config.salt is not None and config.salt.get() == "s" * 16 and "s" * 16 not in repr(config)
    assert config.timeout_seconds == 0
    assert config.on_error_for("openai") is OnError.ALLOW and config.on_error_for("anthropic") is OnError.BLOCK


def test_overrides_by_role_then_agent() -> None:
    config = parse(
        {
            "entities": {"EMAIL_ADDRESS": "redact", "PHONE_NUMBER": "redact"},
            "overrides": [
                {"agent": "bot", "entities": {"EMAIL_ADDRESS": "mask"}},
                {"role": "support", "entities": {"EMAIL_ADDRESS": "allow", "PHONE_NUMBER": {"response": "allow"}}},
            ],
        },
        PATH,
    )
    assert config.rules_for("other", "assistant")["EMAIL_ADDRESS"].request is Action.REDACT
    support = config.rules_for("other", "support")
    assert support["EMAIL_ADDRESS"].request is Action.ALLOW
    assert support["PHONE_NUMBER"] == EntityRule(Action.REDACT, Action.ALLOW, 0.5)
    assert config.rules_for("bot", "support")["EMAIL_ADDRESS"].request is Action.MASK


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"entities": {"EMAIL": "redact"}}, "unknown entity type 'EMAIL'"),
        ({"entities": {"EMAIL_ADDRESS": "scramble"}}, "entities.EMAIL_ADDRESS.action has value 'scramble'"),
        ({"entities": {"EMAIL_ADDRESS": {"action": "redact", "threshold": 2}}}, "Not a number between 0 and 1"),
        ({"entities": {"EMAIL_ADDRESS": {"threshold": 0.4}}}, "needs an action"),
        ({"entities": {"US_SSN": "hash"}}, "salt of at least 16 bytes in the environment variable BASTION_PII_SALT"),
        ({"timeout_ms": -1}, "timeout_ms has value -1"),
        ({"on_error": "maybe"}, "on_error has value 'maybe'"),
        ({"routes": {"openai": {"on_error": "sometimes"}}}, "routes.openai.on_error"),
        ({"entitys": {}}, "unknown keys ['entitys']"),
        ({"overrides": [{"entities": {}}]}, "overrides[0] needs agent and/or role"),
        ({"mcp": "ignore"}, "mcp has value 'ignore'"),
        ([], "expected a mapping"),
    ],
)
def test_bad_configuration_names_the_key_and_value(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(raw, PATH, environ={})
    assert message in str(e.value)


def test_missing_file_means_off_and_a_bad_file_fails(tmp_path: Path) -> None:
    assert load(tmp_path) is None
    (tmp_path / "pii.yaml").write_text("entities: [")
    with pytest.raises(ConfigError, match=r"pii\.yaml"):
        load(tmp_path)


def test_the_shipped_example_is_valid() -> None:
    example = SESSION_POLICIES / "pii.yaml"
    import yaml

    config = parse(yaml.safe_load(example.read_text()), example, environ={})
    assert config.entities["EMAIL_ADDRESS"].request is Action.PSEUDONYMIZE
