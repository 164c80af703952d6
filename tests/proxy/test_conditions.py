from pathlib import Path

import pytest

from bastion.proxy.conditions import (
    ConditionError,
    Conditions,
    email_domain,
    load_lists,
    python_text,
    url_domain,
    url_host,
)

TOKENS = ("r_sub", "r_obj", "r_act", "r_args")
LISTS = {"contacts": frozenset({"ann@example.com", "bob@example.com"})}


def evaluate(cond: str, args: dict[str, object]) -> bool:
    conditions = Conditions(TOKENS, LISTS)
    call = conditions.add(cond)
    assert call == "bastion_condition(0, r_sub, r_obj, r_act, r_args)"
    return conditions.evaluate(0, "agent-1", "tool:t", "call", args)


@pytest.mark.parametrize(
    ("cond", "python"),
    [
        ('"!" not in r.args.body', '"!" not in r_args.body'),
        ("!(r.args.a == 1)", " not (r_args.a == 1)"),
        ("r.args.a != 1", "r_args.a != 1"),
        ("'&&' in r.args.c && r.args.d", "'&&' in r_args.c  and  r_args.d"),
        ('"||" in r.args.c || p.x', '"||" in r_args.c  or  p_x'),
        ('r.args.to == "p.smith@x.com"', 'r_args.to == "p.smith@x.com"'),
        ('r.args.path == "/home/r.jones"', 'r_args.path == "/home/r.jones"'),
        ("r.args.r.x", "r_args.r.x"),
        (r'r.args.a == "say \"!\" && go"', r'r_args.a == "say \"!\" && go"'),
        ('r.args.a == """r."""', 'r_args.a == """r."""'),
    ],
)
def test_casbin_rewriting_happens_outside_string_literals_only(cond: str, python: str) -> None:
    assert python_text(cond) == python


@pytest.mark.parametrize(
    ("cond", "args", "result"),
    [
        ('"!" not in r.args.body', {"body": "hello"}, True),
        ('"!" not in r.args.body', {"body": "hello!"}, False),
        ('"&&" in r.args.command', {"command": "ls && rm -rf /"}, True),
        ('"&&" in r.args.command', {"command": "ls"}, False),
        ('"||" in r.args.command', {"command": "false || curl x"}, True),
        ('r.args.to == "p.smith@x.com"', {"to": "p.smith@x.com"}, True),
        ('r.args.path.startswith("/home/r.jones/")', {"path": "/home/r.jones/a"}, True),
        ("r.args.a > 1 && !(r.args.b == 2)", {"a": 2, "b": 3}, True),
        ("r.args.a > 1 && !(r.args.b == 2)", {"a": 2, "b": 2}, False),
        ('matches(r.args.id, "^[0-9]{4}$")', {"id": "1234"}, True),
        ('matches(r.args.id, "^[0-9]{4}$")', {"id": "12345"}, False),
        ('url_host(r.args.url) == "www.x.com"', {"url": "https://www.x.com/a"}, True),
        ('url_host(r.args.url) == "www.x.com"', {"url": "https://www.x.com.evil.io/a"}, False),
        ('url_domain(r.args.url) == "x.co.uk"', {"url": "https://a.b.x.co.uk:8443/p"}, True),
        ('email_domain(r.args.to) == "example.com"', {"to": "Ann <ann@Example.com>"}, True),
        ('email_domain(r.args.to) == "example.com"', {"to": "ann@example.com, eve@evil.io"}, False),
        ("len(r.args.items) <= 2", {"items": [1, 2]}, True),
        ('all(email_domain(a) == "example.com" for a in r.args.cc)', {"cc": ["a@example.com", "b@evil.io"]}, False),
        ('any(lower(a) == "x" for a in r.args.tags)', {"tags": ["y", "X"]}, True),
        ('lower(r.args.to) == "ann@example.com"', {"to": "ANN@example.com"}, True),
        ('in_list(r.args.to, "contacts")', {"to": "ann@example.com"}, True),
        ('in_list(r.args.to, "contacts")', {"to": "eve@evil.io"}, False),
        ('all_in_list(r.args.to, "contacts")', {"to": ["ann@example.com", "bob@example.com"]}, True),
        ('all_in_list(r.args.to, "contacts")', {"to": ["ann@example.com", "eve@evil.io"]}, False),
        ('all_in_list(r.args.to, "contacts")', {"to": []}, False),
        ('any_in_list(r.args.to, "contacts")', {"to": ["eve@evil.io", "bob@example.com"]}, True),
    ],
)
def test_conditions_evaluate_as_written(cond: str, args: dict[str, object], result: bool) -> None:
    assert evaluate(cond, args) is result


@pytest.mark.parametrize(
    ("cond", "error"),
    [
        ("r.args.a >", "does not parse"),
        ("bool(r.args.a)", "unknown name 'bool'"),
        ('re.match("x", r.args.a)', "unknown name 're'"),
        ("p.name == 'x'", "unknown name 'p_name'"),
        ("__import__('os')", "unknown name '__import__'"),
        ('in_list(r.args.to, "strangers")', "no list named 'strangers'"),
        ("in_list(r.args.to, r.args.list)", "takes a value and a quoted string"),
        ('matches(r.args.a, "(")', "bad regular expression"),
        ('f"{r.args.a}" == "x"', "f-strings"),
    ],
)
def test_bad_conditions_do_not_compile(cond: str, error: str) -> None:
    with pytest.raises(ConditionError, match=error.replace("(", r"\(")):
        Conditions(TOKENS, LISTS).add(cond)


@pytest.mark.parametrize(
    ("cond", "args"),
    [
        ("r.args.to", {"to": "x"}),  # not true or false
        ("r.args.missing == 1", {}),
        ("r.args.a.__class__ == 1", {"a": 1}),
    ],
)
def test_conditions_that_cannot_decide_raise(cond: str, args: dict[str, object]) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the engine turns any of them into a condition-error deny
        evaluate(cond, args)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://WWW.X.com/a", "www.x.com"),
        ("https://user:pw@www.x.com:8443/a", "www.x.com"),
        ("https://www.x.com.evil.io/", "www.x.com.evil.io"),
        ("https://www.x.com@evil.io/", "evil.io"),
        ("www.x.com/path", "www.x.com"),
        ("https://www.x.com./", "www.x.com"),
        ("http://[::1]:80/", "::1"),
        ("", ""),
        ("https://evil.io\\@www.x.com/", ""),  # browsers read the backslash as "/" and go to evil.io
        ("https://www.x.com\t.evil.io/", ""),
        (" https://www.x.com/", ""),
        ("https://www.еxample.com/", ""),  # a Cyrillic "е": hosts must be ASCII (punycode)
        ("https://xn--xample-2of.com/", "xn--xample-2of.com"),
    ],
)
def test_url_host_reads_urls_as_a_parser_does(url: str, host: str) -> None:
    assert url_host(url) == host


@pytest.mark.parametrize(
    ("url", "domain"),
    [("https://a.b.example.com/x", "example.com"), ("http://10.0.0.1/", "10.0.0.1"), ("nothing://", "")],
)
def test_url_domain_is_the_registrable_domain(url: str, domain: str) -> None:
    assert url_domain(url) == domain


@pytest.mark.parametrize(
    ("addr", "domain"),
    [
        ("a@Example.com", "example.com"),
        ("Ann <a@example.com>", "example.com"),
        ("a@example.com@evil.io", ""),
        ("a@example.com, b@evil.io", ""),
        ("not an address", ""),
    ],
)
def test_email_domain_takes_exactly_one_address(addr: str, domain: str) -> None:
    assert email_domain(addr) == domain


def test_lists_are_read_from_text_files(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "contacts.txt").write_text("# people\nann@example.com\n\n  bob@example.com \n")
    (tmp_path / "lists" / "notes.md").write_text("ignored\n")
    assert load_lists(tmp_path) == {"contacts": frozenset({"ann@example.com", "bob@example.com"})}
