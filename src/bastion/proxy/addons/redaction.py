"""PII redaction: personal data and secrets are redacted before they reach a model provider (or, with
``mcp: enforce``, a tool server), pseudonyms are restored in what comes back, and span attributes
carry counts by type, never values. Configured in ``policies/pii.yaml``; the logic is in
:mod:`bastion.proxy.pii`.

Analysis runs in a thread pool, so other calls keep flowing: the async request and response hooks
await it, and streamed answers go through a ``StreamWorker``. If it fails or times out the call is
refused in the caller's API format (fail closed), unless the route is configured
``on_error: allow``, which is recorded on the span.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http

from bastion import semconv
from bastion.proxy import jsonlimits, mcp, push
from bastion.proxy.decision import error
from bastion.proxy.errors import error_response
from bastion.proxy.formats import ApiFormat
from bastion.proxy.pii import audit, bodies, occurrences
from bastion.proxy.pii.config import NER_ENTITIES, Action, EntityRule, OnError, PiiConfig
from bastion.proxy.pii.detector import Detector, Finding
from bastion.proxy.pii.redactor import Conversation, Redactor, Vault, conversation_key
from bastion.proxy.pii.streams import Blocked, StreamRedactor
from bastion.proxy.pii.worker import StreamWorker
from bastion.proxy.sse import EventBuffer, is_event_stream, parse_event
from bastion.proxy.state import CONVERSATION, CallState, answered, refuse, state

log = logging.getLogger(__name__)
CONVERSATION_HEADER = "x-bastion-conversation"
_META = "bastion.pii"
_HEADER_META = CONVERSATION
FAILED_CODE = "pii_check_failed"
BLOCKED_CODE = "pii_blocked"
RESPONSES_REMEMBERED = 100_000
CHANGING = (Action.REDACT, Action.MASK, Action.HASH, Action.BLOCK)


@dataclass
class FlowPii:
    rules: dict[str, EntityRule]
    conversation: Conversation | None
    format: ApiFormat | None  # None: MCP
    enforce: bool = True  # False: MCP in audit mode, counted and never changed
    conversation_key: str | None = None
    counts: Counter[str] = field(default_factory=Counter)


class ConversationHeader:
    """Keeps the agent's ``x-bastion-conversation`` header (Identify removes x-bastion-* headers)."""

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if value := flow.request.headers.get(CONVERSATION_HEADER):
            flow.metadata[_HEADER_META] = value


class Redaction:
    def __init__(self, config: PiiConfig | None, detector: Detector | None = None) -> None:
        self.config = config
        self.detector = detector
        if config is not None and detector is None:
            self.detector = Detector(config.all_entities, config.cache_size)
        salt = config.salt.get() if config and config.salt else None
        self.redactor = Redactor(salt, config.cache_size if config else 0)
        self.vault = Vault(
            config.pseudonym_ttl_seconds if config else 3600.0,
            config.vault_max_conversations if config else 10_000,
            config.vault_max_bytes if config else 64 << 20,
        )
        # Responses API response id -> its conversation's key (ids only, never values).
        self._responses: OrderedDict[str, str] = OrderedDict()
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bastion-pii")
        if config is not None:
            audit.install(self.audit_text)

    def done(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def reload(self, config: PiiConfig) -> None:
        """Serve a new (or a first) configuration. The detector is built first (it may load spaCy),
        then swapped in; pseudonyms already handed out stay valid."""
        detector = Detector(config.all_entities, config.cache_size)
        redactor = Redactor(config.salt.get() if config.salt else None, config.cache_size)
        turning_on = self.config is None
        self.detector, self.redactor, self.config = detector, redactor, config
        self.vault.ttl, self.vault.max_conversations = config.pseudonym_ttl_seconds, config.vault_max_conversations
        self.vault.max_bytes = config.vault_max_bytes
        if turning_on:
            audit.install(self.audit_text)

    # Audit: every configured type becomes its label, whatever its action.

    def audit_text(self, text: str) -> str:
        assert self.config is not None and self.detector is not None
        rules = {e: EntityRule(Action.REDACT, Action.REDACT, r.threshold) for e, r in self.config.entities.items()}
        for override in self.config.overrides:
            for e, r in override.entities.items():
                rules.setdefault(e, EntityRule(Action.REDACT, Action.REDACT, r.threshold))
        return self.redactor.apply(text, self.detector.analyze(text), rules, "request").text

    # Requests

    async def request(self, flow: http.HTTPFlow) -> None:
        config, st = self.config, state(flow)
        if config is None or answered(flow) or st.identity is None or st.call is None:
            return
        fmt = st.format
        if fmt is not None and isinstance(st.body, dict):
            body: Any = st.body
        elif st.call.kind == semconv.KIND_MCP and st.call.endpoint == "tools/call":  # arguments, then the result
            try:
                body = jsonlimits.loads(flow.request.get_content() or b"")
            except ValueError:
                return
        else:
            return
        rules = config.rules_for(st.identity.agent_id, st.identity.role)
        rules_key = frozenset(rules.items())
        try:
            found = await self._analyze(bodies.texts(body, fmt.free_keys if fmt else frozenset()))
        except Exception as e:
            self._failed(flow, st, e)
            return
        mcp = fmt is None
        enforce = not mcp or config.mcp == "enforce"
        conversation, key = None, None
        if fmt is not None and any(r.request is Action.PSEUDONYMIZE for r in rules.values()):
            # A turn that continues an earlier response (Responses API) continues its conversation.
            previous = fmt.continues(body)
            key = self._responses.get(previous) if previous is not None else None
            if key is None:
                header = flow.metadata.get(_HEADER_META)
                key = conversation_key(st.identity.agent_id, header, fmt.first_user_text(body))
            conversation = self.vault.conversation(key)
        # A model call's format answers for itself (refuse() asks it); anything else redacted is MCP.
        provider = None if fmt is not None else "mcp"
        pii = flow.metadata[_META] = FlowPii(rules, conversation, fmt, enforce, key)
        blocked: set[str] = set()

        # A value found anywhere in the request (or pseudonymized earlier in the conversation) is
        # replaced wherever it occurs, a first or last name alone included.
        known = occurrences.values(found, rules)
        if conversation is not None:
            known |= {v for entity, value in conversation.values() for v in occurrences.expand(entity, value, 1.0)}

        def redact(text: str) -> str:
            findings = occurrences.extend(text, found.get(text, ()), known)
            result = self.redactor.apply(text, findings, rules, "request", conversation, rules_key)
            pii.counts.update(result.counts)
            blocked.update(result.blocked)
            return result.text

        try:  # on the pool: applying many findings to a long text takes a while (Presidio's anonymizer)
            extra = fmt.free_keys if fmt else frozenset()
            redacted = (
                await self._in_pool(lambda: bodies.walk(body, redact, extra=extra)) if any(found.values()) else body
            )
        except Exception as e:
            self._failed(flow, st, e)
            return
        _record(st, "request", pii.counts)
        pii.counts = Counter()
        if blocked and enforce:
            kinds = ", ".join(sorted(blocked))
            message = f"Bastion blocked this request: it contains {kinds}, which the PII policy does not let leave."
            refuse(flow, error(BLOCKED_CODE, message), 403, message, BLOCKED_CODE, provider)
            return
        if enforce and redacted != body:
            flow.request.content = jsonlimits.encode(redacted)
            if not mcp:
                st.body = redacted
        if st.call.stream:
            flow.request.headers["accept-encoding"] = "identity"

    async def _analyze(self, texts: Iterable[str]) -> dict[str, tuple[Finding, ...]]:
        config, detector = self.config, self.detector
        assert config is not None and detector is not None
        if config.force_error:
            raise RuntimeError("force_error is set in pii.yaml")
        found: dict[str, tuple[Finding, ...]] = {}
        missing = []
        for text in dict.fromkeys(texts):
            cached = detector.cached(text)
            if cached is None:
                missing.append(text)
            else:
                found[text] = cached
        if missing:
            loop = asyncio.get_running_loop()
            work = loop.run_in_executor(self.pool, lambda: [detector.analyze(t) for t in missing])
            results = await asyncio.wait_for(work, config.timeout_seconds)
            found.update(zip(missing, results, strict=True))
        return found

    async def _off_loop(self, pii: FlowPii, work: Callable[[], Any]) -> Any:
        """``work`` on the pool when it analyzes (restoring only is cheap enough for the loop)."""
        if not _analyzes(pii):
            return work()
        return await self._in_pool(work)

    async def _in_pool(self, work: Callable[[], Any]) -> Any:
        assert self.config is not None
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(self.pool, work), self.config.timeout_seconds)

    def _failed(self, flow: http.HTTPFlow, st: CallState, failure: Exception, what_for: str = "request") -> None:
        assert self.config is not None and st.call is not None
        route = st.route.name if st.route else None
        what = "timed out" if isinstance(failure, TimeoutError) else f"failed ({type(failure).__name__})"
        if self.config.on_error_for(route) is OnError.ALLOW:
            log.warning("PII analysis %s; route %s fails open, the %s passes unredacted", what, route, what_for)
            st.attributes[semconv.BASTION_PII_FAILED_OPEN] = True
            st.attributes[semconv.BASTION_PII_ERROR] = what
            return
        log.warning("PII analysis of the %s %s; the call is refused", what_for, what)
        message = (
            f"Bastion could not check this request for personal data (analysis {what}), so it was not sent."
            if what_for == "request"
            else f"Bastion could not check the answer for personal data (analysis {what}), so it was withheld."
        )
        st.attributes[semconv.BASTION_PII_ERROR] = what
        refuse(flow, error(FAILED_CODE, message), 503, message, FAILED_CODE, None if st.format is not None else "mcp")

    # Responses

    def _process(self, pii: FlowPii, st: CallState, streamed: bool = False) -> Callable[[str, bool], str]:
        analyze = _analyzes(pii)
        detector = self.detector
        assert detector is not None

        def process(text: str, json_string: bool = False) -> str:
            if analyze:
                result = self.redactor.apply(text, detector.analyze(text, not streamed), pii.rules, "response")
                if pii.enforce:
                    text = result.text
                    if result.blocked and streamed:
                        raise Blocked(", ".join(sorted(result.blocked)))
                if result.counts:
                    pii.counts.update(result.counts)
                    _record(st, "response", pii.counts)
            return pii.conversation.restore(text, json_string) if pii.conversation is not None else text

        return process

    def _spans(self, pii: FlowPii) -> Callable[[str], list[tuple[int, int]]] | None:
        if not pii.enforce or not _analyzes(pii):
            return None
        detector = self.detector
        assert detector is not None

        def spans(text: str) -> list[tuple[int, int]]:
            return [
                (f.start, f.end)
                for f in detector.analyze(text, remember=False)
                if f.entity in pii.rules and f.score >= pii.rules[f.entity].threshold
            ]

        return spans

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        pii, response, st = flow.metadata.get(_META), flow.response, state(flow)
        if not isinstance(pii, FlowPii) or response is None or not is_event_stream(response):
            return
        assert self.config is not None
        process = self._process(pii, st, streamed=True)
        redactor: Callable[[bytes], list[bytes]]
        if pii.format is None:
            redactor = _mcp_stream(process)
        else:
            message = "Bastion stopped the response: it contains personal data the PII policy does not let through."
            error = pii.format.error_event(message, BLOCKED_CODE)
            names = any(e in NER_ENTITIES for e in pii.rules)
            window = self.config.holdback_chars
            redactor = StreamRedactor(pii.format, process, self._spans(pii), window, error, names)
        worker = None
        if _analyzes(pii):
            worker = StreamWorker(redactor, self.pool, self.config.timeout_seconds)
            worker.ready = push.pusher(flow, lambda: worker.streaming)
            redactor = worker
        inner = response.stream if callable(response.stream) else None

        def on_chunk(chunk: bytes) -> list[bytes]:
            if chunk is push.NUDGE:  # the worker has finished a chunk: send it now
                return worker.collect() if worker is not None else []
            data = chunk
            if inner is not None:
                out = inner(chunk)
                data = out if isinstance(out, bytes) else b"".join(out)
            sent = redactor(data) if data else []
            if not chunk:
                sent += redactor(b"")
            return sent

        response.stream = on_chunk
        response.headers.pop("content-length", None)

    async def response(self, flow: http.HTTPFlow) -> None:
        pii, response, st = flow.metadata.get(_META), flow.response, state(flow)
        if isinstance(pii, FlowPii) and pii.conversation_key and st.usage.response_id:
            self._responses[st.usage.response_id] = pii.conversation_key
            while len(self._responses) > RESPONSES_REMEMBERED:
                self._responses.popitem(last=False)
        if not isinstance(pii, FlowPii) or response is None or response.stream:
            return
        if "json" not in response.headers.get("content-type", "") or "x-bastion-error" in response.headers:
            return
        try:
            body = jsonlimits.loads(response.get_content() or b"")
        except ValueError:
            return
        process = self._process(pii, st)
        try:
            extra = pii.format.free_keys if pii.format else frozenset()
            rewritten = await self._off_loop(pii, lambda: bodies.walk(body, lambda v: process(v, False), extra=extra))
        except Exception as e:
            self._failed(flow, st, e, "answer")
            if flow.response is not response or pii.conversation is None:
                return
            conversation = pii.conversation  # failing open: the agent still gets its originals back
            rewritten = bodies.walk(body, lambda value: conversation.restore(value, False), extra=extra)
        blocked = {e for e in pii.counts if pii.rules[e].response is Action.BLOCK} if pii.enforce else set()
        if blocked:
            kinds = ", ".join(sorted(blocked))
            message = f"Bastion blocked the response: it contains {kinds}, which the PII policy does not let through."
            if pii.format is None and isinstance(body, dict) and "id" in body:  # answers the call it awaits
                answer = _mcp_blocked(body["id"], kinds)
                headers = {"content-type": "application/json", "x-bastion-error": BLOCKED_CODE}
                flow.response = http.Response.make(200, mcp.encode(answer), headers)
            else:
                flow.response = error_response(pii.format or "mcp", 403, message, BLOCKED_CODE)
            return
        if rewritten != body:
            response.content = jsonlimits.encode(rewritten)


def _analyzes(pii: FlowPii) -> bool:
    """Whether answers are analyzed: MCP in audit mode counts, or some type changes in answers."""
    return not pii.enforce or any(r.response in CHANGING for r in pii.rules.values())


def _record(st: CallState, direction: str, counts: Counter[str]) -> None:
    for entity, count in counts.items():
        st.attributes[f"{semconv.BASTION_PII_PREFIX}.{direction}.{entity}"] = count


def _walk_mcp(message: Any, text: Callable[[str], str]) -> Any:
    """A JSON-RPC message's texts; a notification's params (log data, progress messages) are all text."""
    if isinstance(message, dict) and "id" not in message and isinstance(message.get("params"), dict):
        params = {k: v for k, v in message["params"].items() if k != "_meta"}
        return {**message, "params": {**message["params"], **bodies.walk(params, text, None, True)}}
    return bodies.walk(message, text)


def _mcp_blocked(request_id: Any, kinds: str) -> dict[str, Any]:
    """The JSON-RPC error that replaces a tool's answer holding types configured to block."""
    text = f"Bastion withheld the tool's answer: it contains {kinds}, which the PII policy does not let out."
    return mcp.error(request_id, mcp.POLICY_DENIED, text, {"code": BLOCKED_CODE})


def _mcp_stream(process: Callable[[str, bool], str]) -> Callable[[bytes], list[bytes]]:
    """MCP answers over SSE: each event is a whole JSON-RPC message, rewritten as a whole; one holding
    a type configured to block becomes a JSON-RPC error for the same request (a notification, an SSE
    comment)."""
    events = EventBuffer()

    def rewrite(raw: bytes) -> bytes:
        event = parse_event(raw)
        try:
            message = jsonlimits.loads(event.data)
        except ValueError:
            return raw
        try:
            changed = _walk_mcp(message, lambda s: process(s, False))
        except Blocked as kinds:
            if not isinstance(message, dict) or "id" not in message:  # a notification: nobody awaits it
                return f": Bastion withheld a notification holding {kinds}\n\n".encode()
            changed = _mcp_blocked(message["id"], str(kinds))
        if changed == message:
            return raw
        head = "" if event.event == "message" else f"event: {event.event}\n"
        if raw.startswith(b"event: message"):
            head = "event: message\n"
        return jsonlimits.to_utf8(f"{head}data: {jsonlimits.dumps(changed, compact=True)}\n\n")

    def on_chunk(chunk: bytes) -> list[bytes]:
        blocks = events.feed(chunk) if chunk else [events.flush()]
        out = b"".join(rewrite(raw) if raw.strip() else raw for raw in blocks)
        return [out] if out else []

    return on_chunk
