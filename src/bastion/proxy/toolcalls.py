"""Tool calls a model emits, decided by policy before the agent receives them.

Each API format (the modules in :mod:`bastion.proxy.formats`) finds the tool calls in its responses,
JSON or streamed, and asks a :class:`Judge` about each. A call the policy does not allow is removed
and replaced by text that tells the agent which tool was blocked and by which rule; configured to
block, the whole response becomes an error instead. Tools offered to the model in a request are
filtered by the same policy.

Everything here takes values and returns values: no proxy, no sockets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from bastion.proxy import jsonedit, jsonlimits
from bastion.proxy.decision import DENIED_CODE, REVIEW_CODE, Decision, Effect, PolicyRequest, refusal_message
from bastion.proxy.provenance import Provenance
from bastion.proxy.session import SessionFacts
from bastion.proxy.sse import EventBuffer, parse_event

log = logging.getLogger(__name__)

Json = dict[str, Any]

INVALID_ARGUMENTS_RULE = "invalid-tool-arguments"
DECISION_ERROR_RULE = "decision-error"
CHECK_FAILED_CODE = "tool_check_failed"


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    # JSON text (OpenAI), an already parsed value (Anthropic), or None when absent.
    arguments: Any


def parse_arguments(raw: Any) -> tuple[Json, str | None]:
    """The arguments as a dict, or ``{}`` and what is wrong with them. Empty text means no arguments."""
    if isinstance(raw, str):
        if not raw.strip():
            return {}, None
        try:
            raw = jsonlimits.loads(raw)
        except ValueError as e:
            return {}, f"not valid JSON ({e})"
    if isinstance(raw, dict):
        return raw, None
    return {}, "missing" if raw is None else f"a JSON {type(raw).__name__}, not an object"


@dataclass(frozen=True)
class Verdict:
    call: ToolCall
    request: PolicyRequest
    decision: Decision

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    @property
    def explanation(self) -> str:
        """What the agent reads in place of a blocked call."""
        return (
            f"Bastion blocked the model's call of tool '{self.call.name}' (call id {self.call.id or 'none'}, "
            f"rule '{self.decision.rule}'); it was not run. {refusal_message(self.request, self.decision)}"
        )


# What the policy may know about a call beyond its arguments: (tool name, arguments) -> where the
# arguments came from and the session's earlier calls.
Facts = Callable[[str, Json], tuple[Provenance | None, SessionFacts | None]]


class Judge:
    """Decides one agent's tool calls; a call seen again (same id, name and arguments) keeps its verdict.
    With ``facts``, each call is decided with its arguments' provenance and the session's earlier calls."""

    def __init__(
        self,
        decide: Callable[[PolicyRequest], Decision],
        agent_id: str,
        role: str,
        record: Callable[[Verdict], None] | None = None,
        facts: Facts | None = None,
    ) -> None:
        self._decide, self.agent_id, self.role, self._record = decide, agent_id, role, record
        self._facts = facts
        self._seen: dict[tuple[str, str, str], Verdict] = {}
        self.verdicts: list[Verdict] = []

    def __call__(self, call: ToolCall) -> Verdict:
        key = (call.id, call.name, json.dumps(call.arguments, sort_keys=True, default=str))
        if (found := self._seen.get(key)) is not None:
            return found
        args, problem = parse_arguments(call.arguments)
        try:
            prov, session = self._facts(call.name, args) if self._facts is not None else (None, None)
        except Exception:  # without provenance every value is of unknown origin: fail closed
            log.exception("could not trace a tool call's arguments")
            prov, session = None, None
        request = PolicyRequest(self.agent_id, self.role, f"tool:{call.name}", "call", args, prov, session)
        try:
            decision = self._decide(request)
        except Exception as e:  # fail closed
            log.exception("could not decide a tool call")
            decision = Decision(Effect.DENY, DECISION_ERROR_RULE, f"the policy could not decide: {e}")
        if problem is not None:
            reason = f"the arguments of {call.name} are {problem}; Bastion refuses tool calls it cannot check"
            decision = Decision(Effect.DENY, INVALID_ARGUMENTS_RULE, reason, decision.policy_version)
        verdict = self._seen[key] = Verdict(call, request, decision)
        self.verdicts.append(verdict)
        if self._record is not None:
            try:
                self._record(verdict)
            except Exception:  # telemetry never breaks traffic
                log.exception("could not record a tool call decision")
        return verdict


def blocked_message(denied: Iterable[Verdict]) -> str:
    """The error an agent gets when a response is blocked whole."""
    reasons = " ".join(refusal_message(v.request, v.decision) for v in denied)
    return f"Bastion blocked the model's response because it calls a tool the policy does not allow. {reasons}"


def blocked_code(denied: Iterable[Verdict]) -> str:
    effects = {v.decision.effect for v in denied}
    return REVIEW_CODE if effects == {Effect.REVIEW} else DENIED_CODE


# Streaming: whole events in, events out.


def sse_event(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def event_json(raw: bytes) -> tuple[str, Json | None]:
    """An event's name and its data as a JSON object (None when it is not one, like ``[DONE]``)."""
    event = parse_event(raw)
    try:
        data = jsonlimits.loads(event.data) if event.data else None
    except ValueError:
        return event.event, None
    return event.event, data if isinstance(data, dict) else None


class StreamRewriter(Protocol):
    closed: bool  # nothing more may pass: the stream was blocked

    def event(self, raw: bytes) -> list[bytes]:
        """One whole event block in; the events to send now out."""
        ...

    def end(self) -> list[bytes]:
        """The stream ended: what is still held, decided."""
        ...

    def error(self, message: str, code: str) -> bytes:
        """An error event in this API's format."""
        ...


Chunks = bytes | Iterable[bytes]


def _joined(chunks: Chunks) -> bytes:
    return chunks if isinstance(chunks, bytes) else b"".join(chunks)


def stream_callback(
    rewriter: StreamRewriter, inner: Callable[[bytes], Chunks] | None = None
) -> Callable[[bytes], list[bytes]]:
    """A mitmproxy ``flow.response.stream`` callable: ``inner`` (if any) first, then the rewriter.

    Chunks are cut into whole events; the final ``b""`` flushes. Should the rewriter fail, the
    stream ends with an error event: a response Bastion cannot check does not pass. It returns a
    list of chunks, empty while it holds events: an empty ``bytes`` chunk would end a chunked
    HTTP/1.1 response to the client (mitmproxy writes it as the terminating zero-length chunk).
    """
    events = EventBuffer()

    def on_chunk(chunk: bytes) -> list[bytes]:
        data = chunk if inner is None else _joined(inner(chunk))
        out: list[bytes] = []
        try:
            blocks = events.feed(data)
            if not chunk:
                rest = events.flush()
                blocks += [rest] if rest.strip() else []
            for raw in blocks:
                if rewriter.closed:
                    break
                out += rewriter.event(raw)
            if not chunk and not rewriter.closed:
                out += rewriter.end()
        except Exception:
            log.exception("could not check a streamed response's tool calls")
            if not rewriter.closed:
                rewriter.closed = True
                out.append(rewriter.error("Bastion could not check this response's tool calls.", CHECK_FAILED_CODE))
        return [b"".join(out)] if out else []

    return on_chunk


def closed_stream(error: bytes, inner: Callable[[bytes], Chunks] | None = None) -> Callable[[bytes], list[bytes]]:
    """A stream callable that sends one error event and discards everything upstream sends."""
    sent = False

    def on_chunk(chunk: bytes) -> list[bytes]:
        nonlocal sent
        if inner is not None:
            inner(chunk)
        if sent:
            return []
        sent = True
        return [error]

    return on_chunk


# Requests: the tools offered to the model.


@dataclass(frozen=True)
class ToolList:
    """A request member that lists tools, and the members that make no sense without it."""

    key: str
    name: Callable[[Any], str | None]  # a tool definition's name, None for tools Bastion does not govern
    choice_key: str
    forced: Callable[[Any], str | None]  # the tool a choice forces, if any
    companions: tuple[str, ...]


@dataclass(frozen=True)
class FilteredRequest:
    text: str | None  # the new body, None when nothing changed
    hidden: list[str]
    forced: str | None  # a hidden tool the request forces the model to call


def filter_tools(text: str, body: Json, lists: Iterable[ToolList], visible: Callable[[str], bool]) -> FilteredRequest:
    """Remove the tools the agent may not call from the request ``text`` (parsed: ``body``)."""
    changes: dict[str, str | None] = {}
    hidden: list[str] = []
    forced = None
    for tools in lists:
        offered = body.get(tools.key)
        if not isinstance(offered, list):
            continue
        kept = []
        for tool in offered:
            name = tools.name(tool)
            if name is None or visible(name):
                kept.append(tool)
            else:
                hidden.append(name)
        if len(kept) == len(offered):
            continue
        choice = tools.forced(body.get(tools.choice_key))
        if choice is not None and choice in hidden:
            forced = choice
        if kept:
            changes[tools.key] = _kept_text(text, tools.key, kept, offered)
        else:
            changes.update(dict.fromkeys((tools.key, *tools.companions), None))
    if not changes:
        return FilteredRequest(None, hidden, forced)
    return FilteredRequest(jsonedit.edit(text, changes), hidden, forced)


def _kept_text(text: str, key: str, kept: list[Any], offered: list[Any]) -> str:
    """The list of ``kept`` tools, each in its original bytes."""
    found = [m for m in jsonedit.members(text) if m.key == key]
    items = jsonedit.array_items(text, found[0]) if len(found) == 1 else []
    if len(items) != len(offered):  # the key is there twice: write the list the parsed body holds
        return json.dumps(kept)
    ids = {id(t) for t in kept}
    return "[" + ", ".join(raw for raw, tool in zip(items, offered, strict=True) if id(tool) in ids) + "]"
