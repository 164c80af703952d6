"""Casbin policy decisions: allow, deny or review, with the matching rule as the reason.

The model and rules are standard Casbin files. A rule reads
``p, subject, object, action, effect, name, condition``; the condition is a Casbin ``eval()``
expression over the call's arguments (``r.args.amount <= 100``) and may be left out. Bastion reads
``policy.csv`` itself (:mod:`bastion.proxy.policy_file`: line numbers, commas in strings) and
compiles each condition (:mod:`bastion.proxy.conditions`: string literals kept as written, names
checked, functions and named lists); Casbin's matcher then calls the compiled condition.

Deny beats review beats allow, and a call no rule matches is denied. To name the matching rule
for each outcome, the rules are split by effect into one enforcer each, and each enforcer is
asked for its first match; rules in shadow mode get enforcers of their own, which are only
recorded.

pycasbin checks every rule on every request, so Bastion indexes: for each object and action it
meets, it keeps enforcers holding only the rules whose object and action patterns match them
(when the matcher requires ``wildcardMatch`` on both, which makes that selection exact). Calls
with new arguments then cost a handful of rules, not all of them. Decisions are also cached per
request until the policy changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase, translate
from pathlib import Path

import casbin
from casbin.effect import AllowOverrideEffector

from bastion.files import Stamp, stamp
from bastion.proxy.conditions import (
    CALL_FUNCTION,
    CURRENT,
    CallFacts,
    ConditionError,
    Conditions,
    list_files,
    load_lists,
)
from bastion.proxy.config import ConfigError, load_shadow_rules
from bastion.proxy.decision import Decision, Effect, PolicyRequest
from bastion.proxy.objects import wildcard_match
from bastion.proxy.policy_file import PolicyLine, read_policy

log = logging.getLogger(__name__)
# pycasbin logs every request, and every deny as a warning; Bastion records decisions itself.
logging.getLogger("casbin").setLevel(logging.CRITICAL)

MODEL_FILE = "model.conf"
POLICY_FILE = "policy.csv"
CONFIG_FILE = "bastion.yaml"
NO_MATCH_RULE = "default-deny"
CONDITION_ERROR_RULE = "condition-error"
EFFECT_ORDER = (Effect.DENY, Effect.REVIEW, Effect.ALLOW)
REQUIRED_POLICY_TOKENS = ("p_sub", "p_obj", "p_act", "p_eft", "p_name")
CACHE_SIZE = 10_000
INDEX_SIZE = 1_024
# When the matcher requires these (joined by &&), rules can be pre-selected per object and action.
INDEX_TERMS = ("wildcardMatch(r_obj, p_obj)", "wildcardMatch(r_act, p_act)")


# A glob pattern as tokens: "*" and "?" are wildcards, a compiled "[...]" set matches one character,
# any other one-character string is itself (fnmatch has no escapes: a literal * is written [*]).
_Token = str | re.Pattern[str]
_WITNESS_CHARS = "a0/-_.:xA"


def _glob_tokens(pattern: str) -> list[_Token]:
    """``pattern`` split as fnmatch reads it (an unclosed "[" is a literal)."""
    tokens: list[_Token] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] == "[":
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j < n:
                tokens.append(re.compile(translate(pattern[i : j + 1])))
                i = j + 1
                continue
        tokens.append(pattern[i])
        i += 1
    return tokens


def _token_matches(token: _Token, c: str) -> bool:
    if isinstance(token, re.Pattern):
        return token.match(c) is not None
    return token == "?" or c == token


def glob_witness(pattern: str, prefix: str) -> str | None:
    """A string that starts with ``prefix`` and that ``pattern`` matches (as ``wildcardMatch`` does),
    or None when every string ``pattern`` matches leaves ``prefix``. Lets Bastion ask whether a rule
    could match some call to a host and port before any path is known."""
    tokens = _glob_tokens(pattern)

    def closure(states: set[int]) -> set[int]:
        todo, seen = list(states), set(states)
        while todo:
            i = todo.pop()
            if i < len(tokens) and tokens[i] == "*" and i + 1 not in seen:
                seen.add(i + 1)
                todo.append(i + 1)
        return seen

    states = closure({0})
    for c in prefix:
        following = set()
        for i in states:
            if i < len(tokens):
                if tokens[i] == "*":
                    following.add(i)
                elif _token_matches(tokens[i], c):
                    following.add(i + 1)
        states = closure(following)
        if not states:
            return None
    for start in sorted(states, reverse=True):  # the furthest along needs the least added
        rest = []
        for token in tokens[start:]:
            if token == "*":
                continue
            rest.append(next((c for c in _WITNESS_CHARS + pattern if _token_matches(token, c)), ""))
        witness = prefix + "".join(rest)
        if fnmatchcase(witness, pattern):
            return witness
    return None


def _register_functions(enforcer: casbin.Enforcer, conditions: Conditions | None = None) -> casbin.Enforcer:
    enforcer.add_function("wildcardMatch", wildcard_match)
    if conditions is not None:
        enforcer.add_function(CALL_FUNCTION, conditions.evaluate)
    return enforcer


class PolicyError(ValueError):
    """The policy files do not load or do not validate; the message says where and why."""


@dataclass(frozen=True)
class Rule:
    sub: str
    obj: str
    act: str
    effect: Effect
    name: str
    cond: str
    line: int = 0  # in policy.csv
    call: str = "True"  # what Casbin evaluates for the condition: the call of its compiled form

    def as_match(self) -> list[str]:
        """The rule as its effect's enforcer holds it: every rule there is a match, hence "allow"."""
        return [self.sub, self.obj, self.act, "allow", self.name, self.call if self.cond else "True"]


def _stamp(policies_dir: Path) -> tuple[tuple[str, Stamp], ...]:
    files = [policies_dir / name for name in (MODEL_FILE, POLICY_FILE, CONFIG_FILE)]
    return tuple((str(path), stamp(path)) for path in [*files, *list_files(policies_dir)])


class CompiledPolicy:
    """One loaded, validated version of the policy files."""

    def __init__(self, policies_dir: Path) -> None:
        model_path, policy_path = policies_dir / MODEL_FILE, policies_dir / POLICY_FILE
        try:
            base = casbin.Enforcer(str(model_path))
            lines = read_policy(policy_path)
            lists = load_lists(policies_dir)
        except Exception as e:  # pycasbin raises many kinds
            raise PolicyError(f"{policies_dir}: Casbin could not load the model and rules: {e}") from e
        self.model_path = model_path
        self.conditions = Conditions(base.get_model()["r"]["r"].tokens, lists)
        self.rules, self.groupings = _rules(base, policy_path, lines, self.conditions)
        try:
            self.shadow = frozenset(load_shadow_rules(policies_dir))
        except ConfigError as e:
            raise PolicyError(str(e)) from e
        unknown = self.shadow - {r.name for r in self.rules}
        if unknown:
            raise PolicyError(f"{policies_dir / CONFIG_FILE}: shadow_rules names unknown rules {sorted(unknown)}")
        digest = hashlib.sha256(model_path.read_bytes() + policy_path.read_bytes())
        digest.update(json.dumps(sorted(self.shadow)).encode())
        digest.update(json.dumps({name: sorted(entries) for name, entries in sorted(lists.items())}).encode())
        self.version = digest.hexdigest()[:12]
        self._subjects: set[tuple[str, str]] = set()  # (agent, key role) pairs, added as requests arrive
        self.enforcers = {
            (shadow, effect): self._enforcer(
                [r for r in self.rules if r.effect is effect and (r.name in self.shadow) == shadow]
            )
            for shadow in (False, True)
            for effect in EFFECT_ORDER
        }
        # Listing tools, before any arguments exist: a tool is visible when an allow or review rule
        # could match some arguments (its condition set aside) and no unconditional deny matches.
        enforced = [r for r in self.rules if r.name not in self.shadow]
        self.unconditional_deny = self._enforcer([r for r in enforced if r.effect is Effect.DENY and not r.cond])
        self.could_allow = self._enforcer(
            [replace(r, cond="") for r in enforced if r.effect in (Effect.ALLOW, Effect.REVIEW)]
        )
        # Reaching a host before any call exists (a CONNECT): each allow or review rule is asked on
        # its own (condition set aside) with an object it matches; its enforcer is built when first asked.
        self.reaching = [replace(r, cond="") for r in enforced if r.effect in (Effect.ALLOW, Effect.REVIEW)]
        self._single: dict[str, casbin.Enforcer] = {}
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, ...], Decision] = OrderedDict()
        matcher = [term.strip() for term in str(base.get_model()["m"]["m"].value).split("&&")]
        self.indexed = "||" not in " ".join(matcher) and all(term in matcher for term in INDEX_TERMS)
        self._index: OrderedDict[tuple[str, str], dict[tuple[bool, Effect], casbin.Enforcer | None]] = OrderedDict()
        self._check_matcher()

    def _enforcer(self, rules: list[Rule]) -> casbin.Enforcer | None:
        if not rules:
            return None
        enforcer = _register_functions(casbin.Enforcer(str(self.model_path)), self.conditions)
        enforcer.set_effector(AllowOverrideEffector())
        enforcer.add_policies([r.as_match() for r in rules])
        groupings = self.groupings + [g for agent, role in self._subjects for g in _subject_groupings(agent, role)]
        if groupings:
            enforcer.add_grouping_policies(groupings)
        return enforcer

    def _enforcers_for(self, obj: str, act: str) -> dict[tuple[bool, Effect], casbin.Enforcer | None]:
        """The enforcers to ask about ``act`` on ``obj``: the index's when it applies, else all rules'."""
        if not self.indexed:
            return self.enforcers
        key = (obj, act)
        with self._lock:
            found = self._index.get(key)
            if found is not None:
                self._index.move_to_end(key)
                return found
            matching = [r for r in self.rules if wildcard_match(obj, r.obj) and fnmatchcase(act, r.act)]
            found = {
                (shadow, effect): self._enforcer(
                    [r for r in matching if r.effect is effect and (r.name in self.shadow) == shadow]
                )
                for shadow in (False, True)
                for effect in EFFECT_ORDER
            }
            self._index[key] = found
            if len(self._index) > INDEX_SIZE:
                self._index.popitem(last=False)
            return found

    def _check_matcher(self) -> None:
        try:
            self.first_match(PolicyRequest("bastion-check", "", "model:check", "chat", {}), shadow=False)
        except Exception as e:
            raise PolicyError(f"{self.model_path}: the matcher does not evaluate: {e}") from e

    def subject(self, agent_id: str, role: str) -> str:
        """Casbin's subject for a call: the agent in the role of the key it came with."""
        if not role:
            return agent_id
        if (agent_id, role) not in self._subjects:
            with self._lock:
                if (agent_id, role) in self._subjects:
                    return _subject(agent_id, role)
                indexed = [e for bucket in self._index.values() for e in bucket.values()]
                listing = [self.unconditional_deny, self.could_allow]
                for enforcer in [*self.enforcers.values(), *listing, *indexed, *self._single.values()]:
                    if enforcer is not None:
                        enforcer.add_grouping_policies(_subject_groupings(agent_id, role))
                self._subjects.add((agent_id, role))
        return _subject(agent_id, role)

    def single(self, rule: Rule) -> casbin.Enforcer:
        """An enforcer holding only ``rule`` (call ``subject`` first, as for every enforcer)."""
        with self._lock:
            found = self._single.get(rule.name)
            if found is None:
                found = self._enforcer([rule])
                assert found is not None
                self._single[rule.name] = found
            return found

    def first_match(self, request: PolicyRequest, *, shadow: bool) -> tuple[Effect, str] | None:
        values = (self.subject(request.agent_id, request.role), request.obj, request.act, request.args)
        enforcers = self._enforcers_for(request.obj, request.act)
        for effect in EFFECT_ORDER:
            enforcer = enforcers[(shadow, effect)]
            if enforcer is None:
                continue
            matched, explain = enforcer.enforce_ex(*values)
            if matched:
                return effect, explain[4] if len(explain) > 4 else ", ".join(explain)
        return None

    def unmet_condition(self, request: PolicyRequest) -> str | None:
        """The first allow or review rule that matches ``request`` but for its condition, if any."""
        if self.could_allow is None:
            return None
        values = (self.subject(request.agent_id, request.role), request.obj, request.act, request.args)
        matched, explain = self.could_allow.enforce_ex(*values)
        return explain[4] if matched and len(explain) > 4 else None

    def cached(self, key: tuple[str, ...]) -> Decision | None:
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
        return found

    def remember(self, key: tuple[str, ...], decision: Decision) -> None:
        self._cache[key] = decision
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)


def _rules(
    base: casbin.Enforcer, policy_path: Path, lines: list[PolicyLine], conditions: Conditions
) -> tuple[list[Rule], list[list[str]]]:
    """The rules and ``g`` groupings of ``policy.csv``, each rule's condition compiled; a bad line
    raises PolicyError naming the file and line."""
    tokens = list(base.get_model()["p"]["p"].tokens)
    missing = [t.removeprefix("p_") for t in REQUIRED_POLICY_TOKENS if t not in tokens]
    if missing:
        raise PolicyError(f"{policy_path.parent / MODEL_FILE}: policy_definition lacks {missing}")
    rules: list[Rule] = []
    groupings: list[list[str]] = []
    names: set[str] = set()
    for line in lines:
        key, values = line.fields[0], line.fields[1:]
        where = f"{policy_path}:{line.number}"
        if key == "g":
            if len(values) != 2 or not all(values):
                raise PolicyError(f"{where}: a g line reads 'g, agent, role:<name>', not {', '.join(line.fields)!r}")
            groupings.append(values)
            continue
        if key != "p":
            raise PolicyError(f"{where}: a line starts with p (a rule) or g (an agent's role), not {key!r}")
        if len(values) > len(tokens):
            raise PolicyError(
                f"{where}: {len(values)} fields where the model has {len(tokens)} "
                "(a condition holding a comma outside brackets and strings needs CSV quotes)"
            )
        values += [""] * (len(tokens) - len(values))
        fields = dict(zip(tokens, values, strict=True))
        name = fields.get("p_name", "")
        where = f"{where}: rule {name!r}" if name else where
        try:
            effect = Effect(fields.get("p_eft", ""))
        except ValueError:
            raise PolicyError(f"{where}: effect must be allow, deny or review, not {fields.get('p_eft')!r}") from None
        if effect is Effect.ERROR:
            raise PolicyError(f"{where}: effect must be allow, deny or review")
        if not name or name in names:
            raise PolicyError(f"{where}: every rule needs a unique name; {name!r} is {'taken' if name else 'empty'}")
        names.add(name)
        cond = fields.get("p_cond", "").strip()
        call = "True"
        if cond:
            try:
                call = conditions.add(cond)
            except ConditionError as e:
                raise PolicyError(f"{where}: {e}") from None
        rules.append(Rule(fields["p_sub"], fields["p_obj"], fields["p_act"], effect, name, cond, line.number, call))
    return rules, groupings


def call_facts(request: PolicyRequest) -> CallFacts:
    """What conditions may ask about ``request`` beyond its fields (see conditions.CallFacts).
    Without a provenance every value is of unknown origin, hence untrusted (fail closed)."""
    prov, session = request.prov, request.session
    return CallFacts(
        prov=prov.kinds() if prov is not None else {},
        from_untrusted=prov.from_untrusted if prov is not None else lambda value: True,
        session_count=session.count if session is not None else lambda pattern: 0,
        session_called=session.called if session is not None else lambda pattern, value: False,
    )


def _facts_key(request: PolicyRequest) -> tuple[str, str]:
    """The part of the cache key that provenance and session facts add."""
    prov = "" if request.prov is None else request.prov.key()
    session = "" if request.session is None else json.dumps(request.session.calls, sort_keys=True, default=str)
    return prov, session


def _reason(effect: Effect, rule: str, request: PolicyRequest) -> str:
    if effect is Effect.ALLOW:
        return f"allowed by rule '{rule}'"
    if effect is Effect.REVIEW:
        return f"rule '{rule}' requires a human's approval"
    return f"denied by rule '{rule}'"


class PolicyEngine:
    """Decides requests with the current policy; ``reload_if_changed`` swaps in a new one."""

    def __init__(self, policies_dir: Path) -> None:
        self.policies_dir = policies_dir
        self._stamp = _stamp(policies_dir)
        self._policy = CompiledPolicy(policies_dir)

    @property
    def version(self) -> str:
        return self._policy.version

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed. Raises PolicyError, keeping the old policy, if they are bad."""
        stamp = _stamp(self.policies_dir)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        self._policy = CompiledPolicy(self.policies_dir)
        log.info("policy reloaded, version %s", self._policy.version)
        return True

    def decide(self, request: PolicyRequest) -> Decision:
        policy = self._policy
        args = json.dumps(request.args, sort_keys=True, default=str)
        key = (request.agent_id, request.role, request.obj, request.act, args, *_facts_key(request))
        if (found := policy.cached(key)) is not None:
            return found
        token = CURRENT.set(call_facts(request))
        try:
            decision = self._decide(policy, request)
        except Exception as e:  # a condition that cannot be evaluated fails closed
            reason = f"a rule's condition could not be evaluated for {request.obj}: {e}"
            decision = Decision(Effect.DENY, CONDITION_ERROR_RULE, reason, policy.version)
        finally:
            CURRENT.reset(token)
        policy.remember(key, decision)
        return decision

    def _decide(self, policy: CompiledPolicy, request: PolicyRequest) -> Decision:
        match = policy.first_match(request, shadow=False)
        if match is None:
            unmet = policy.unmet_condition(request)
            reason = (
                f"no rule allows {request.act} on {request.obj} for agent {request.agent_id}, "
                f"so '{NO_MATCH_RULE}' applies"
            )
            if unmet is not None:
                reason = (
                    f"condition of '{unmet}' not met and no other rule allows {request.act} on {request.obj} "
                    f"for agent {request.agent_id}, so '{NO_MATCH_RULE}' applies"
                )
            decision = Decision(Effect.DENY, NO_MATCH_RULE, reason, policy.version)
        else:
            decision = Decision(match[0], match[1], _reason(match[0], match[1], request), policy.version)
        if policy.shadow:
            shadow = policy.first_match(request, shadow=True)
            if shadow is not None and shadow[0] is not decision.effect:
                decision = replace(decision, shadow_effect=shadow[0], shadow_rule=shadow[1])
        return decision

    def reach(
        self,
        agent_id: str,
        role: str,
        prefixes: Sequence[str],
        exact: Sequence[str] = (),
        names: Callable[[str], bool] = lambda pattern: False,
        act: str | None = None,
    ) -> Reach | None:
        """See :func:`reach`: which rules could allow calls to a destination, before or apart from
        the decision on one call (which names only the first matching rule)."""
        return reach(self._policy, agent_id, role, prefixes, exact, names, act)

    def visible(self, agent_id: str, role: str, obj: str, act: str) -> bool:
        """Could some call of ``act`` on ``obj`` be allowed (or reviewed)? For filtering tool lists."""
        policy = self._policy
        subject = policy.subject(agent_id, role)
        deny, could_allow = policy.unconditional_deny, policy.could_allow
        try:
            if deny is not None and deny.enforce_ex(subject, obj, act, {})[0]:
                return False
            return could_allow is not None and bool(could_allow.enforce_ex(subject, obj, act, {})[0])
        except Exception:
            return False


@dataclass(frozen=True)
class Reach:
    """Rules through which an agent could reach a destination: ``rule`` could allow (or hold) some
    call to it; ``named`` is such a rule that names the destination itself, when there is one."""

    rule: str
    named: str | None = None


def reach(
    policy: CompiledPolicy,
    agent_id: str,
    role: str,
    prefixes: Sequence[str],
    exact: Sequence[str] = (),
    names: Callable[[str], bool] = lambda pattern: False,
    act: str | None = None,
) -> Reach | None:
    """Could an allow or review rule of the agent (conditions set aside) match an object that starts
    with one of ``prefixes`` or is one of ``exact``, with action ``act`` (any action when None)?
    ``names`` says whether a rule's object pattern names the destination itself. With the bundled
    matcher this is exact: each candidate rule is asked, on its own, about an object it matches
    (found by :func:`glob_witness`)."""
    subject = policy.subject(agent_id, role)
    first: str | None = None
    for rule in policy.reaching:
        naming = names(rule.obj)
        if first is not None and not naming:
            continue  # only a rule that names the destination can add anything now
        objects = [w for p in prefixes if (w := glob_witness(rule.obj, p)) is not None]
        objects += [o for o in exact if fnmatchcase(o, rule.obj)]
        action = glob_witness(rule.act, "") if act is None else act if fnmatchcase(act, rule.act) else None
        if not objects or action is None:
            continue
        enforcer = policy.single(rule)
        try:
            if not any(enforcer.enforce_ex(subject, obj, action, {})[0] for obj in objects):
                continue
        except Exception:  # a matcher that cannot evaluate this reaches nothing: fail closed
            continue
        first = first or rule.name
        if naming:
            return Reach(first, rule.name)
    return None if first is None else Reach(first)


def _subject(agent_id: str, role: str) -> str:
    return f"{agent_id} as role:{role}"


def _subject_groupings(agent_id: str, role: str) -> list[list[str]]:
    """An agent may hold keys of several roles: a call gets the agent's rules (and the roles policy.csv
    gives the agent) and its key's role, never the roles of the agent's other keys."""
    subject = _subject(agent_id, role)
    return [[subject, agent_id], [subject, f"role:{role}"]]
