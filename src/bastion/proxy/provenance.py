"""Where a tool call's arguments came from: the user's or system prompt, a tool's result, or nowhere.

Bastion sees the whole conversation of every model call (system, user, assistant, tool results).
Each API format's ``conversation`` (``read_chat``, ``read_responses``, ``read_messages``,
``read_gemini`` here) reduces a request body to its texts, each with its source, and the tool calls
made earlier in it. :func:`trace` then finds
each argument value of a tool call the model emits in those texts:

- ``user`` it appears in a user message (the user asked for it);
- ``system`` in the system (or developer) prompt, and in no user message;
- ``tool`` only in tool results;
- ``model`` nowhere: the model made it up (or composed it, like a mail's body);
- ``unknown`` Bastion did not see the conversation (an MCP call no model call emitted).

A value is looked for as a whole word, case-insensitively; a URL is looked for by its host (then by
its registrable domain), since its target is what matters. A list or object argument takes the
most doubtful source of its values (unknown, tool, model, system, user, in that order).

A value is *untrusted* when it came only from the results of untrusted tools, or when its source
is unknown (fail closed). Every tool's results are untrusted unless the tool is listed in
``provenance.trusted_tools`` in bastion.yaml.

Everything here takes values and returns values, except :class:`ProvenanceLinks`, the bounded
memory that links an MCP ``tools/call`` to the model call that emitted it.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from bastion.proxy.conditions import url_domain, url_host
from bastion.proxy.session import SessionFacts

Json = dict[str, Any]

USER, SYSTEM, TOOL, MODEL, UNKNOWN = "user", "system", "tool", "model", "unknown"
# The most doubtful first: a list argument takes the first of these any of its values has.
DOUBT = (UNKNOWN, TOOL, MODEL, SYSTEM, USER)
LINKS_REMEMBERED = 10_000
_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|www\.)", re.IGNORECASE)


@dataclass(frozen=True)
class Trust:
    """Which tools' results are trusted (``provenance.trusted_tools``: globs on the tool's name)."""

    trusted_tools: tuple[str, ...] = ()

    def trusts(self, tool: str) -> bool:
        return any(fnmatchcase(tool, pattern) for pattern in self.trusted_tools)


@dataclass(frozen=True)
class Text:
    source: str  # user | system | tool
    tool: str  # the tool whose result this is ("" unless source is tool; "?" when unnamed)
    text: str  # lower case


@dataclass(frozen=True)
class Conversation:
    """What a model request holds that provenance and session facts need."""

    texts: tuple[Text, ...] = ()
    calls: tuple[tuple[str, Json], ...] = ()  # earlier tool calls in it: (tool name, arguments)
    answered: bool = False  # a model turn is in its history (it is not the conversation's first call)


@dataclass(frozen=True)
class Origin:
    source: str
    untrusted: bool
    tools: tuple[str, ...] = ()  # the tools whose results hold the value


@dataclass(frozen=True)
class Provenance:
    """Where each argument of one tool call came from."""

    args: dict[str, Origin] = field(default_factory=dict)
    # Every value in the arguments (a URL by its host), lower case -> its origin.
    values: dict[str, Origin] = field(default_factory=dict)
    unknown: bool = False  # the conversation was not seen: every value is of unknown origin

    def kinds(self) -> dict[str, str]:
        """Argument -> its source, for conditions (``r.prov.<arg>``)."""
        return {name: origin.source for name, origin in self.args.items()}

    def from_untrusted(self, value: object) -> bool:
        """Whether ``value`` (a string, number or a list of them) came only from untrusted tool results;
        true for a value Bastion cannot place (fail closed)."""
        if self.unknown:
            return True
        if isinstance(value, dict):
            return any(self.from_untrusted(v) for v in value.values())
        if isinstance(value, list | tuple):
            return any(self.from_untrusted(v) for v in value)
        origin = self.values.get(_key(value))
        return origin is None or origin.untrusted

    def record(self) -> Json:
        """What a decision record keeps: per argument, its source, untrusted or not, and the tools."""
        if self.unknown:
            return {"unknown": True}
        return {
            name: {"source": o.source, "untrusted": o.untrusted, "tools": list(o.tools)}
            for name, o in self.args.items()
        }

    def key(self) -> str:
        """Equal for provenances that every condition reads alike (the decision cache's key)."""
        values = sorted((k, o.source, o.untrusted) for k, o in self.values.items())
        return json.dumps([self.unknown, sorted(self.kinds().items()), values])

    @classmethod
    def from_record(cls, record: Any, args: Json) -> Provenance:
        """A provenance rebuilt from :meth:`record` and the arguments as stored (for ``policy replay``)."""
        if not isinstance(record, dict) or record.get("unknown"):
            return unknown_provenance(args)
        origins: dict[str, Origin] = {}
        values: dict[str, Origin] = {}
        for name, raw in record.items():
            if not isinstance(raw, dict):
                continue
            tools = raw.get("tools")
            source = str(raw.get("source", UNKNOWN))
            origin = Origin(
                source,
                bool(raw.get("untrusted", source in (TOOL, UNKNOWN))),
                tuple(str(t) for t in tools) if isinstance(tools, list) else (),
            )
            origins[str(name)] = origin
            for leaf in _leaves(args.get(name)):
                values[_key(leaf)] = origin
        return cls(origins, values)


def unknown_provenance(args: Json) -> Provenance:
    """The provenance of a call whose conversation Bastion did not see."""
    unknown = Origin(UNKNOWN, True)
    return Provenance(dict.fromkeys(args, unknown), {}, unknown=True)


def trace(conversation: Conversation, args: Json, trust: Trust) -> Provenance:
    """Where each of ``args``'s values came from in ``conversation`` (see the module's docstring)."""
    values: dict[str, Origin] = {}
    origins: dict[str, Origin] = {}
    for name, value in args.items():
        found = []
        for leaf in _leaves(value):
            key = _key(leaf)
            if key not in values:
                values[key] = _origin(conversation, leaf, trust)
            found.append(values[key])
        origins[name] = min(found, key=lambda o: DOUBT.index(o.source)) if found else Origin(MODEL, False)
    return Provenance(origins, values)


def _origin(conversation: Conversation, value: object, trust: Trust) -> Origin:
    needles = _needles(value)
    if not needles:
        return Origin(MODEL, False)
    for needle in needles:
        holders = [t for t in conversation.texts if needle.search(t.text)]
        if not holders:
            continue
        sources = {t.source for t in holders}
        if USER in sources:
            return Origin(USER, False)
        if SYSTEM in sources:
            return Origin(SYSTEM, False)
        tools = tuple(sorted({t.tool for t in holders}))
        return Origin(TOOL, not any(trust.trusts(t) for t in tools), tools)
    return Origin(MODEL, False)


def _needles(value: object) -> list[re.Pattern[str]]:
    """What to look for: the value as a whole word; a URL's host, then its registrable domain."""
    if isinstance(value, bool) or value is None:
        return []
    text = str(value).strip().lower()
    if not text:
        return []
    if _URL.match(text):
        parts = [url_host(text), url_domain(text)]
        words = [p for i, p in enumerate(parts) if p and p not in parts[:i]]
    else:
        words = [text]
    return [re.compile(rf"(?<!\w){re.escape(w)}(?!\w)") for w in words]


def _key(value: object) -> str:
    text = str(value).strip().lower()
    return (url_host(text) or text) if _URL.match(text) else text


def _leaves(value: Any) -> Iterator[object]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


# Reading conversations.


Reader = Callable[[Json, list[Text], list[tuple[str, Json]]], bool]


def _reading(read: Reader) -> Callable[[Any], Conversation]:
    """A format's conversation reader (``ApiFormat.conversation``): the texts with their sources, the
    earlier tool calls, and whether a model turn came before."""

    def conversation(body: Any) -> Conversation:
        if not isinstance(body, dict):
            return Conversation()
        texts: list[Text] = []
        calls: list[tuple[str, Json]] = []
        answered = read(body, texts, calls)
        return Conversation(tuple(t for t in texts if t.text), tuple(calls), answered)

    return conversation


def _text(source: str, content: Any, tool: str = "") -> Text:
    return Text(source, tool, " ".join(_strings(content)).lower())


def _strings(content: Any) -> Iterator[str]:
    """Every string in ``content`` but the names of its parts' types."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            yield from _strings(part)
    elif isinstance(content, dict):
        for key, value in content.items():
            if key not in ("type", "id", "tool_use_id", "call_id", "cache_control"):
                yield from _strings(value)


def _arguments(raw: Any) -> Json:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return raw if isinstance(raw, dict) else {}


def _role_source(role: Any) -> str | None:
    return {"user": USER, "system": SYSTEM, "developer": SYSTEM}.get(role) if isinstance(role, str) else None


def _read_chat(body: Json, texts: list[Text], calls: list[tuple[str, Json]]) -> bool:
    names: dict[str, str] = {}
    answered = False
    for message in _dicts(body.get("messages")):
        role = message.get("role")
        if (source := _role_source(role)) is not None:
            texts.append(_text(source, message.get("content")))
        elif role == "assistant":
            answered = True
            for call in _dicts(message.get("tool_calls")):
                function = call.get("function")
                if not isinstance(function, dict):  # no function: no call to remember
                    continue
                name = str(function.get("name", ""))
                names[str(call.get("id", ""))] = name
                calls.append((name, _arguments(function.get("arguments"))))
            legacy = message.get("function_call")
            if isinstance(legacy, dict):
                calls.append((str(legacy.get("name", "")), _arguments(legacy.get("arguments"))))
        elif role == "tool":
            tool = names.get(str(message.get("tool_call_id", "")), "?")
            texts.append(_text(TOOL, message.get("content"), tool))
        elif role == "function":
            texts.append(_text(TOOL, message.get("content"), str(message.get("name", "?"))))
    return answered


def _read_responses(body: Json, texts: list[Text], calls: list[tuple[str, Json]]) -> bool:
    if body.get("instructions"):
        texts.append(_text(SYSTEM, body["instructions"]))
    items = body.get("input")
    if isinstance(items, str):
        texts.append(_text(USER, items))
        return False
    names: dict[str, str] = {}
    answered = False
    for item in _dicts(items):
        kind = item.get("type", "message")
        if kind == "message" and (source := _role_source(item.get("role"))) is not None:
            texts.append(_text(source, item.get("content")))
        elif kind == "message" and item.get("role") == "assistant":
            answered = True
        elif kind == "function_call":
            answered = True
            name = str(item.get("name", ""))
            names[str(item.get("call_id", ""))] = name
            calls.append((name, _arguments(item.get("arguments"))))
        elif kind == "function_call_output":
            texts.append(_text(TOOL, item.get("output"), names.get(str(item.get("call_id", "")), "?")))
    return answered


def _read_messages(body: Json, texts: list[Text], calls: list[tuple[str, Json]]) -> bool:
    if body.get("system"):
        texts.append(_text(SYSTEM, body["system"]))
    names: dict[str, str] = {}
    answered = False
    for message in _dicts(body.get("messages")):
        role, content = message.get("role"), message.get("content")
        blocks = content if isinstance(content, list) else [content]
        if role == "assistant":
            answered = True
            for block in _dicts(blocks):
                if block.get("type") == "tool_use":
                    name = str(block.get("name", ""))
                    names[str(block.get("id", ""))] = name
                    calls.append((name, _arguments(block.get("input"))))
            continue
        if role != "user":
            continue
        for part in blocks:
            if isinstance(part, dict) and part.get("type") == "tool_result":
                tool = names.get(str(part.get("tool_use_id", "")), "?")
                texts.append(_text(TOOL, part.get("content"), tool))
            else:
                texts.append(_text(USER, part))
    return answered


def _read_gemini(body: Json, texts: list[Text], calls: list[tuple[str, Json]]) -> bool:
    """Gemini: ``systemInstruction``, and ``contents`` of user and model turns whose parts are text,
    ``functionCall`` (the model's) or ``functionResponse`` (a tool's result, named by its function)."""
    system = body.get("systemInstruction")
    if isinstance(system, dict):
        texts.append(_text(SYSTEM, [p.get("text") for p in _dicts(system.get("parts"))]))
    elif isinstance(system, str):
        texts.append(_text(SYSTEM, system))
    answered = False
    for turn in _dicts(body.get("contents")):
        model = turn.get("role") == "model"
        answered = answered or model
        for part in _dicts(turn.get("parts")):
            call, result = part.get("functionCall"), part.get("functionResponse")
            if isinstance(call, dict):
                calls.append((str(call.get("name", "")), _arguments(call.get("args"))))
            elif isinstance(result, dict):
                texts.append(_text(TOOL, result.get("response"), str(result.get("name", "?"))))
            elif not model and "text" in part:
                texts.append(_text(USER, part.get("text")))
    return answered


read_chat = _reading(_read_chat)
read_responses = _reading(_read_responses)
read_messages = _reading(_read_messages)
read_gemini = _reading(_read_gemini)


def _dicts(items: Any) -> Iterable[Json]:
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


@dataclass(frozen=True)
class Linked:
    """What the model call that emitted a tool call knew about it."""

    prov: Provenance
    session: SessionFacts  # the conversation's earlier calls


class ProvenanceLinks:
    """The provenance (and the conversation's earlier calls) of tool calls models emitted, so that the
    MCP ``tools/call`` running one (same agent, tool name and arguments) is decided with them. Bounded
    (least recently used goes first) and per process: a call run through another replica than the
    model call's is of unknown origin."""

    def __init__(self, size: int = LINKS_REMEMBERED) -> None:
        self.size = size
        self._links: OrderedDict[tuple[str, str, str], Linked] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, agent_id: str, tool: str, args: Json, linked: Linked) -> None:
        key = (agent_id, tool, canonical(args))
        with self._lock:
            self._links[key] = linked
            self._links.move_to_end(key)
            while len(self._links) > self.size:
                self._links.popitem(last=False)

    def find(self, agent_id: str, tool: str, args: Json) -> Linked | None:
        key = (agent_id, tool, canonical(args))
        with self._lock:
            found = self._links.get(key)
            if found is not None:
                self._links.move_to_end(key)
            return found

    def __len__(self) -> int:
        return len(self._links)


def canonical(args: Any) -> str:
    return json.dumps(args, sort_keys=True, separators=(",", ":"), default=str)
