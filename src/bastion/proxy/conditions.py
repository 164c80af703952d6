"""Rule conditions, compiled by Bastion into a safe evaluator instead of handed to pycasbin's ``eval()``.

pycasbin rewrites ``!``, ``&&``, ``||``, ``r.`` and ``p.`` everywhere in a condition, string literals
included, so ``"!" not in r.args.body`` would read ``"not " not in r_args.body``. Here the same
rewriting is done outside string literals only, the result is parsed once, and every name in it must
be a request field (``r.args``, ``r.sub``, ..., and ``r.prov``, which Bastion adds), a comprehension
variable or one of :data:`FUNCTIONS`.
The rule handed to Casbin then only calls ``bastion_condition(<index>, r.sub, ...)``.

Evaluation uses simpleeval (pycasbin's own evaluator): no imports, no private attributes, bounded
strings and comprehensions. A condition must come out true or false; anything else, or an error such
as a missing argument, fails closed (the engine denies with ``condition-error``).
"""

from __future__ import annotations

import ast
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import getaddresses
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from simpleeval import EvalWithCompoundTypes

CALL_FUNCTION = "bastion_condition"
LISTS_DIR = "lists"
LIST_SUFFIX = ".txt"
LIST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Outside string literals, as pycasbin would read them: && and ||, ! that is not !=, r. and p.
_REWRITES = (
    (re.compile(r"&&"), " and "),
    (re.compile(r"\|\|"), " or "),
    (re.compile(r"!(?!=)"), " not "),
    (re.compile(r"(?<![\w.])([rp]\d*)\."), r"\1_"),
)


class ConditionError(ValueError):
    """A condition does not compile: bad syntax, an unknown name, an unknown list."""


def python_text(cond: str) -> str:
    """``cond`` with Casbin's operators and ``r.``/``p.`` prefixes rewritten outside string literals."""
    out: list[str] = []
    code_start = i = 0
    n = len(cond)
    while i < n:
        c = cond[i]
        if c not in "'\"":
            i += 1
            continue
        out.append(_rewrite(cond[code_start:i]))
        quote = cond[i : i + 3] if cond[i : i + 3] in ("'''", '"""') else c
        j = i + len(quote)
        while j < n and not cond.startswith(quote, j):
            j += 2 if cond[j] == "\\" else 1
        end = min(j + len(quote), n)
        out.append(cond[i:end])  # the literal, unchanged (an unclosed one fails to parse later)
        code_start = i = end
    out.append(_rewrite(cond[code_start:]))
    return "".join(out)


def _rewrite(code: str) -> str:
    for pattern, replacement in _REWRITES:
        code = pattern.sub(replacement, code)
    return code


# The functions a condition may call. Each takes plain values and returns plain values.


def url_host(url: object) -> str:
    """The host of ``url`` as a URL parser reads it (lower case, no port or credentials; "" if none).
    ``https://www.x.com.evil.io/`` has host ``www.x.com.evil.io``; a URL without a scheme is read as
    ``//`` + url, so ``x.com/a`` has host ``x.com``. A URL that parsers read differently (a
    backslash, which browsers take for ``/``; spaces or control characters) has no host: "" never
    equals an allowed host, so such a URL fails closed."""
    text = str(url)
    if _AMBIGUOUS_URL.search(text):
        return ""
    if "//" not in text.split("?", 1)[0].split("#", 1)[0]:
        text = "//" + text
    try:
        host = (urlsplit(text).hostname or "").rstrip(".")
    except ValueError:
        return ""
    if _HOST_NAME.fullmatch(host):
        return host
    try:
        return str(ipaddress.IPv6Address(host))
    except ValueError:
        return ""


_AMBIGUOUS_URL = re.compile(r"[\\\s\x00-\x1f\x7f]")
_HOST_NAME = re.compile(r"[a-z0-9_.-]+")


@cache
def _suffixes() -> Any:
    import tldextract

    # The public suffix list shipped inside tldextract: never fetched at run time.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def url_domain(url: object) -> str:
    """The registrable domain of ``url``'s host by the public suffix list (``a.b.example.co.uk`` ->
    ``example.co.uk``); an IP address is its own domain; "" when there is no host."""
    host = url_host(url)
    if not host:
        return ""
    parts = _suffixes()(host)
    if parts.suffix and parts.domain:
        return f"{parts.domain}.{parts.suffix}"
    return host


def email_domain(addr: object) -> str:
    """The domain of one mail address (``Ann <ann@Example.com>`` -> ``example.com``); "" unless
    ``addr`` holds exactly one address with exactly one ``@``, so ``a@x.com, b@evil.io`` has none."""
    found = getaddresses([str(addr)], strict=True)
    if len(found) != 1:
        return ""
    address = found[0][1]
    if address.count("@") != 1:
        return ""
    local, domain = address.split("@")
    return domain.lower().rstrip(".") if local and domain else ""


def matches(value: object, pattern: str) -> bool:
    """Whether the regular expression ``pattern`` (Python syntax) finds a match anywhere in ``value``;
    anchor it with ``^...$`` to match the whole value."""
    return re.search(pattern, str(value)) is not None


def lower(value: object) -> Any:
    """``value`` in lower case; a list has each string in it lower-cased."""
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, list | tuple):
        return [v.lower() if isinstance(v, str) else v for v in value]
    raise TypeError(f"lower() takes a string or a list, not {type(value).__name__}")


BUILTINS: dict[str, Callable[..., Any]] = {
    "len": len,
    "any": any,
    "all": all,
    "lower": lower,
    "matches": matches,
    "url_host": url_host,
    "url_domain": url_domain,
    "email_domain": email_domain,
}
LIST_FUNCTIONS = ("in_list", "all_in_list", "any_in_list")


@dataclass(frozen=True)
class CallFacts:
    """What a condition may ask about the call beyond its fields: where its arguments came from
    (``r.prov``, ``from_untrusted``) and what the session did before (``session_count``,
    ``session_called``). The policy engine sets them (:data:`CURRENT`) while it decides a call."""

    prov: Mapping[str, str]
    from_untrusted: Callable[[object], bool]
    session_count: Callable[[object], int]
    session_called: Callable[[object, object], bool]


CURRENT: ContextVar[CallFacts | None] = ContextVar("bastion_call_facts", default=None)
# A request field Bastion adds to Casbin's: r.prov.<argument> is where the argument's value came from.
PROV_FIELD = "r_prov"


def from_untrusted(value: object) -> bool:
    """Whether ``value`` came only from untrusted tool results (true when that is not known)."""
    facts = CURRENT.get()
    return True if facts is None else facts.from_untrusted(value)


def session_count(pattern: object) -> int:
    """How many calls matching the object ``pattern`` were made earlier in the session."""
    facts = CURRENT.get()
    return 0 if facts is None else facts.session_count(pattern)


def session_called(pattern: object, value: object) -> bool:
    """Whether a call matching ``pattern`` earlier in the session had ``value`` as an argument value."""
    facts = CURRENT.get()
    return False if facts is None else facts.session_called(pattern, value)


CALL_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "from_untrusted": from_untrusted,
    "session_count": session_count,
    "session_called": session_called,
}
FUNCTIONS = (*BUILTINS, *LIST_FUNCTIONS, *CALL_FUNCTIONS)


def load_lists(policies_dir: Path) -> dict[str, frozenset[str]]:
    """Named lists: ``lists/<name>.txt`` beside the rules, one entry per line; blank lines and lines
    starting with ``#`` are skipped, and entries are stripped of surrounding spaces."""
    lists: dict[str, frozenset[str]] = {}
    for path in list_files(policies_dir):
        entries = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
        lists[path.stem] = frozenset(e for e in entries if e and not e.startswith("#"))
    return lists


def list_files(policies_dir: Path) -> list[Path]:
    folder = policies_dir / LISTS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"*{LIST_SUFFIX}") if LIST_NAME.match(p.stem))


def _list_functions(lists: Mapping[str, frozenset[str]]) -> dict[str, Callable[..., bool]]:
    def entries(name: str) -> frozenset[str]:
        if name not in lists:
            raise LookupError(f"no list named {name!r}")
        return lists[name]

    def values(found: object) -> list[object]:
        return list(found) if isinstance(found, list | tuple) else [found]

    def in_list(value: object, name: str) -> bool:
        """Whether ``value`` is an entry of the named list (compared exactly)."""
        return isinstance(value, str) and value in entries(name)

    def all_in_list(found: object, name: str) -> bool:
        """Whether every one of ``found`` (a list, or one value) is in the named list; false when empty."""
        items = values(found)
        return bool(items) and all(isinstance(v, str) and v in entries(name) for v in items)

    def any_in_list(found: object, name: str) -> bool:
        """Whether some one of ``found`` (a list, or one value) is in the named list."""
        return any(isinstance(v, str) and v in entries(name) for v in values(found))

    return {"in_list": in_list, "all_in_list": all_in_list, "any_in_list": any_in_list}


class _Evaluator(EvalWithCompoundTypes):  # type: ignore[misc]
    """simpleeval, with ``a.b`` on a JSON object always meaning its member ``b``: ``r.args.items`` is
    the argument named items, not the dict method."""

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        if not node.attr.startswith(("_", "func_")):
            value = self._eval(node.value)
            if isinstance(value, dict):
                if node.attr not in value:
                    raise KeyError(f"no argument or member {node.attr!r}")
                return value[node.attr]
        return super()._eval_attribute(node)


@dataclass(frozen=True)
class Condition:
    text: str  # as written in the rule
    tree: ast.expr  # the parsed expression, Casbin's rewriting done outside literals


def compile_condition(cond: str, request_tokens: Iterable[str], lists: Mapping[str, frozenset[str]]) -> Condition:
    """Parse ``cond`` and check every name in it; raises ConditionError saying what is wrong."""
    text = python_text(cond).strip()
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as e:
        raise ConditionError(f"condition {cond!r} does not parse: {e.msg}") from None
    allowed = set(request_tokens) | {PROV_FIELD} | set(FUNCTIONS) | {"True", "False", "None"}
    bound = {
        name.id
        for node in ast.walk(tree)
        if isinstance(node, ast.comprehension)
        for name in ast.walk(node.target)
        if isinstance(name, ast.Name)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in allowed | bound:
            known = ", ".join(sorted(allowed - {"True", "False", "None"}))
            raise ConditionError(f"condition {cond!r} uses unknown name {node.id!r} (known: {known})")
        if isinstance(node, ast.JoinedStr | ast.Lambda | ast.NamedExpr):
            raise ConditionError(f"condition {cond!r}: f-strings, lambdas and := are not allowed")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            _check_call(cond, node, lists)
    return Condition(cond, tree)


def _check_call(cond: str, node: ast.Call, lists: Mapping[str, frozenset[str]]) -> None:
    assert isinstance(node.func, ast.Name)
    name = node.func.id
    literal = node.args[1] if len(node.args) > 1 else None
    if not isinstance(literal, ast.Constant) or not isinstance(literal.value, str):
        if name in LIST_FUNCTIONS or name == "matches":
            raise ConditionError(f"condition {cond!r}: {name}() takes a value and a quoted string")
        return
    if name in LIST_FUNCTIONS and literal.value not in lists:
        known = ", ".join(sorted(lists)) or "none"
        raise ConditionError(f"condition {cond!r}: no list named {literal.value!r} (lists: {known})")
    if name == "matches":
        try:
            re.compile(literal.value)
        except re.error as e:
            raise ConditionError(f"condition {cond!r}: bad regular expression {literal.value!r}: {e}") from None


class Conditions:
    """The compiled conditions of one policy version, evaluated by index from Casbin's matcher."""

    def __init__(self, request_tokens: Iterable[str], lists: Mapping[str, frozenset[str]]) -> None:
        self.request_tokens = tuple(request_tokens)
        self.lists = dict(lists)
        self._compiled: list[Condition] = []
        self._functions = {**BUILTINS, **_list_functions(self.lists), **CALL_FUNCTIONS}

    def add(self, cond: str) -> str:
        """Compile ``cond`` and return what Casbin's ``eval(p.cond)`` should run in its place."""
        self._compiled.append(compile_condition(cond, self.request_tokens, self.lists))
        return f"{CALL_FUNCTION}({len(self._compiled) - 1}, {', '.join(self.request_tokens)})"

    def evaluate(self, index: int, *values: object) -> bool:
        condition = self._compiled[index]
        names = dict(zip(self.request_tokens, values, strict=True))
        facts = CURRENT.get()
        names[PROV_FIELD] = dict(facts.prov) if facts is not None else {}
        evaluator = _Evaluator(functions=self._functions, names=names)
        result = evaluator.eval("", previously_parsed=condition.tree)
        if not isinstance(result, bool):
            raise TypeError(f"condition {condition.text!r} gave {result!r}, not true or false")
        return result
