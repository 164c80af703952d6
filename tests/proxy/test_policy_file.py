import pytest

from bastion.proxy.policy_file import split_fields


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        ("p, a, tool:x, call, allow, r1,", ["p", "a", "tool:x", "call", "allow", "r1", ""]),
        ('p, a, b, c, allow, r1, r.args.to == "x,y"', ["p", "a", "b", "c", "allow", "r1", 'r.args.to == "x,y"']),
        ("p, a, b, c, allow, r1, r.args.x in (1, 2)", ["p", "a", "b", "c", "allow", "r1", "r.args.x in (1, 2)"]),
        ('p, a, b, c, allow, r1, "r.args.to == ""x,y"""', ["p", "a", "b", "c", "allow", "r1", 'r.args.to == "x,y"']),
        ('p, a, b, c, allow, r1, "!" not in r.args.b', ["p", "a", "b", "c", "allow", "r1", '"!" not in r.args.b']),
        ("p, a, b, c, allow, r1, r.args.x == ','", ["p", "a", "b", "c", "allow", "r1", "r.args.x == ','"]),
        ('p, "a, b", c', ["p", "a, b", "c"]),
        ("g, agent-1, role:assistant", ["g", "agent-1", "role:assistant"]),
    ],
)
def test_commas_split_fields_only_outside_brackets_strings_and_csv_quotes(line: str, fields: list[str]) -> None:
    assert split_fields(line) == fields
