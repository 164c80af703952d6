from pathlib import Path

import pytest

from bastion.cli import main
from bastion.proxy.decision import PolicyRequest
from bastion.proxy.policy import PolicyEngine
from factories.proxy import policies_dir


def test_lists_are_edited_in_place_and_the_policy_reloads_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = policies_dir(tmp_path)
    engine = PolicyEngine(policies)
    payment = PolicyRequest(
        "agent-1", "assistant", "tool:send_money", "call", {"amount": 5, "recipient": "carol@x.com"}
    )
    assert not engine.decide(payment).allowed
    assert main(["lists", "add", "payees", "carol@x.com", "--policies", str(policies)]) == 0
    assert engine.reload_if_changed() and engine.decide(payment).allowed
    text = (policies / "lists" / "payees.txt").read_text()
    assert text.startswith("# Payees") and text.endswith("bob@example.com\ncarol@x.com\n")  # comments and order kept
    assert main(["lists", "remove", "payees", "carol@x.com", "--policies", str(policies)]) == 0
    assert engine.reload_if_changed() and not engine.decide(payment).allowed
    capsys.readouterr()
    assert main(["lists", "show", "payees", "--policies", str(policies)]) == 0
    assert capsys.readouterr().out == "alice@example.com\nbob@example.com\n"


@pytest.mark.parametrize("args", [["../etc", "x"], ["payees", "# not an entry"], ["payees", "a\nb"]])
def test_bad_names_and_entries_are_refused(tmp_path: Path, args: list[str]) -> None:
    policies = policies_dir(tmp_path)
    before = (policies / "lists" / "payees.txt").read_text()
    assert main(["lists", "add", *args, "--policies", str(policies)]) == 2
    assert (policies / "lists" / "payees.txt").read_text() == before
