"""Limits (``limits:`` in bastion.yaml): rates, tokens, concurrency, runaway agents, failing upstreams.

``Limits`` runs on allowed calls just before they leave (after policy and any human's approval):
it refuses what a limit stops, with the limit's name as the decision's rule, or waits for a
concurrency slot (asynchronously: other calls flow on). ``LimitsSettle`` runs once the response is
read (after ResponseStream, before Tracing): it corrects the token estimate from the usage, frees
the slots and counts upstream errors. The logic is ``proxy/limiter.py``'s; both share one Limiter.
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import http
from mitmproxy.flow import Error

from bastion import semconv
from bastion.proxy import mcp
from bastion.proxy.breakers import call_key, conversation_key
from bastion.proxy.config import GatewayConfig, LiveConfig, live
from bastion.proxy.control import Control
from bastion.proxy.decision import Decision, Effect, error
from bastion.proxy.limiter import Attempt, Limiter, Refusal, Ticket
from bastion.proxy.objects import tool_object
from bastion.proxy.state import CONVERSATION, CallState, answered, mcp_server, refuse_with, state
from bastion.proxy.state import refuse as refuse_call

log = logging.getLogger(__name__)
_TICKET = "bastion.limits.ticket"
FAILED_CODE = "limits_failed"
# Output tokens a model request asks for at most, by API.
_MAX_OUTPUT = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def estimate_tokens(content: bytes, body: object) -> int:
    """Tokens a model call may use: about 4 bytes of request per input token, plus the output asked for."""
    tokens = len(content) // 4 + 1
    if isinstance(body, dict):
        tokens += next((v for k in _MAX_OUTPUT if isinstance(v := body.get(k), int) and v > 0), 0)
    return tokens


def attempt(flow: http.HTTPFlow, st: CallState) -> Attempt:
    """What the limits look at in a call the policy allowed."""
    assert st.identity is not None and st.call is not None
    who, call = st.identity, st.call
    route = st.route
    upstream = f"{route.upstream.host}:{route.upstream.port}" if route else f"{flow.request.host}:{flow.request.port}"
    header = flow.metadata.get(CONVERSATION)
    header = header if isinstance(header, str) else None
    if call.kind == semconv.KIND_MCP:
        server = mcp_server(flow)
        target = tool_object(call.target or "", server.name if server else None)
        session = header or flow.request.headers.get(mcp.SESSION_HEADER)
        conversation = conversation_key(who.agent_id, session, "") if session else None
        tool: str | None = None
        try:
            messages, _ = mcp.read(flow.request.get_content() or b"")
            tool = call_key(*mcp.tool_call(messages[0]))
        except ValueError:
            pass
        return Attempt(who.agent_id, who.role, who.key_id, target, upstream, conversation, tool)
    if call.kind != semconv.KIND_MODEL:
        return Attempt(who.agent_id, who.role, who.key_id, call.policy_object, upstream)
    first = st.format.first_user_text(st.body) if st.format is not None and isinstance(st.body, dict) else ""
    conversation = conversation_key(who.agent_id, header, first)
    said = st.conversation()
    history = tuple(call_key(name, args) for name, args in said.calls)
    tokens = estimate_tokens(flow.request.raw_content or b"", st.body)
    fresh = header is None and not said.answered
    target = call.policy_object
    return Attempt(who.agent_id, who.role, who.key_id, target, upstream, conversation, None, history, tokens, fresh)


class Limits:
    def __init__(
        self, limiter: Limiter, control: Control | None = None, config: GatewayConfig | LiveConfig | None = None
    ) -> None:
        self.limiter = limiter
        self.control = control  # to suspend an agent whose breaker tripped (suspend_on_trip)
        self.live = None if config is None else live(config)  # mcp_refusals follows bastion.yaml

    @property
    def mcp_refusals(self) -> str:
        return "tool_result" if self.live is None else self.live.current.mcp_refusals
        self._tasks: set[asyncio.Task[None]] = set()

    async def request(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if answered(flow) or not self.limiter.settings.enabled or st.identity is None or st.call is None:
            return
        if st.decision is None or not st.decision.allowed:
            return
        if st.call.kind == semconv.KIND_MCP and st.call.target is None:
            return  # over MCP only tools/call is limited (not the handshake, lists or streams)
        try:
            ticket, refusal = self.limiter.check(attempt(flow, st))
        except Exception:  # a limit that cannot be checked does not let the call pass (fail closed)
            log.exception("limits: could not check a call")
            message = "Bastion could not check this call's limits (an internal error), so it was not sent."
            refuse_call(flow, error(FAILED_CODE, message), 500, message, FAILED_CODE)
            return
        if ticket is not None:
            refusal = await self.limiter.enter(ticket)
            if refusal is None:
                if flow.live:
                    flow.metadata[_TICKET] = ticket
                else:  # the agent went away while it waited
                    self.limiter.release(ticket)
                return
        if refusal is not None:
            refuse(flow, st, refusal, self.mcp_refusals)
            if refusal.suspend:
                self.suspend(st.identity.agent_id, refusal.message)

    def suspend(self, agent: str, reason: str) -> None:
        if self.control is None:
            log.warning("limits: cannot suspend agent %s without the collector's agent controls", agent)
            return
        task = asyncio.get_running_loop().create_task(self._suspend_now(self.control, agent, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _suspend_now(self, control: Control, agent: str, reason: str) -> None:
        try:
            await control.suspend(agent, reason[:4000])
        except Exception as e:  # the local suspension holds; the collector did not hear of it
            log.warning("limits: could not suspend agent %s through the collector: %s", agent, e)


class LimitsSettle:
    """After the response is read: usage corrects the estimate, slots are freed, errors counted."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def response(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        own = response is not None and "x-bastion-error" in response.headers
        self._settle(flow, failed=response is not None and response.status_code >= 500 and not own)

    def error(self, flow: http.HTTPFlow) -> None:
        """No answer from upstream counts as its failure; an agent that went away (or a kill) does not."""
        error = flow.error
        by_client = error is not None and (error.msg.startswith("Client") or error.msg == Error.KILLED_MESSAGE)
        self._settle(flow, failed=flow.response is None and not by_client)

    def _settle(self, flow: http.HTTPFlow, failed: bool) -> None:
        ticket = flow.metadata.pop(_TICKET, None)
        if not isinstance(ticket, Ticket):
            return
        st = state(flow)
        usage = st.usage
        used = None if usage.input_tokens is None else usage.input_tokens + (usage.output_tokens or 0)
        for trip in self.limits.limiter.settle(ticket, failed, used):
            st.attributes[semconv.BASTION_ALERT_TYPE] = trip.alert
            st.attributes[semconv.BASTION_ALERT_MESSAGE] = trip.message
            if trip.suspend:
                self.limits.suspend(trip.agent, trip.message)


def refuse(flow: http.HTTPFlow, st: CallState, refusal: Refusal, mcp_refusals: str) -> None:
    """Answer a call a limit stopped, in the caller's API format, recorded as a decision naming the limit."""
    decision = Decision(Effect.DENY, refusal.rule, refusal.message)
    st.attributes[semconv.ERROR_TYPE] = refusal.code
    if refusal.alert is not None:
        st.attributes[semconv.BASTION_ALERT_TYPE] = refusal.alert
        st.attributes[semconv.BASTION_ALERT_MESSAGE] = refusal.message
    call = st.call
    if call is None or call.kind != semconv.KIND_MCP:
        refuse_call(flow, decision, refusal.status, refusal.message, refusal.code, retry_after=refusal.retry_after)
        return
    try:
        messages, _ = mcp.read(flow.request.get_content() or b"")
        request_id = messages[0].id
    except ValueError:
        request_id = None
    data: mcp.Json = {"code": refusal.code, "rule": refusal.rule}
    if refusal.retry_after is not None:
        data["retry_after"] = refusal.retry_after
    headers = flow.request.headers
    if mcp_refusals == "tool_result":
        text = f"The tool {call.target} was not run. {refusal.message}"
        payload = mcp.tool_error(request_id, text, {"bastion/refusal": data}, modern=mcp.is_modern(headers))
    else:
        code = mcp.RATE_LIMITED if refusal.status in (429, 503) else mcp.POLICY_DENIED
        payload = mcp.error(request_id, code, refusal.message, data)
    if not mcp.is_modern(headers) and mcp.accepts_sse(headers):
        body, content_type = mcp.sse_event(payload), "text/event-stream"
    else:
        body, content_type = mcp.encode(payload), "application/json"
    answer = {"content-type": content_type, "cache-control": "no-cache", "x-bastion-error": refusal.code}
    if session := headers.get(mcp.SESSION_HEADER):
        answer[mcp.SESSION_HEADER] = session
    if refusal.retry_after is not None:
        answer["retry-after"] = str(refusal.retry_after)
    refuse_with(flow, decision, http.Response.make(200, body, answer))
