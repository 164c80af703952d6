"""Tool calls: the model is offered only tools the agent may call, and each call it emits is decided
before the agent receives it (JSON or streamed). The logic is in :mod:`bastion.proxy.toolcalls`.

Each decision is recorded as a child span of the call's span. Telemetry never breaks traffic.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mitmproxy import http
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer

from bastion import semconv
from bastion.proxy import jsonlimits, provenance
from bastion.proxy.config import GatewayConfig, LiveConfig, ToolCallSettings, live
from bastion.proxy.decision import PolicyRequest, deny, refusal_code, refusal_message
from bastion.proxy.errors import error_response
from bastion.proxy.formats import ApiFormat
from bastion.proxy.policy import PolicyEngine
from bastion.proxy.provenance import Conversation, Linked, Provenance, ProvenanceLinks
from bastion.proxy.session import SessionFacts, conversation_facts
from bastion.proxy.sse import is_event_stream
from bastion.proxy.state import CallState, answered, refuse, state
from bastion.proxy.telemetry import decision_attributes, request_attributes
from bastion.proxy.toolcalls import (
    CHECK_FAILED_CODE,
    Judge,
    Verdict,
    blocked_code,
    blocked_message,
    closed_stream,
    stream_callback,
)

log = logging.getLogger(__name__)

SPAN_NAME = f"{semconv.OPERATION_APPLY_GUARDRAIL} {semconv.TARGET_TOOL_CALL}"


class ToolCalls:
    def __init__(
        self,
        engine: PolicyEngine,
        tracer: Tracer,
        config: GatewayConfig | LiveConfig,
        links: ProvenanceLinks | None = None,
    ) -> None:
        self.engine, self.tracer = engine, tracer
        self.live = live(config)  # tool_calls and provenance follow bastion.yaml
        # Each emitted call's provenance, for the MCP tools/call that will run it (McpGovernance).
        self.links = links if links is not None else ProvenanceLinks()

    @property
    def settings(self) -> ToolCallSettings:
        """bastion.yaml's tool_calls section, as in force now."""
        return self.live.current.tool_calls

    def request(self, flow: http.HTTPFlow) -> None:
        if answered(flow):
            return
        st = state(flow)
        fmt = _format(st)
        if fmt is None or st.identity is None or st.call is None or not isinstance(st.body, dict):
            return
        if st.call.stream:  # the stream must be readable to be checked
            flow.request.headers["accept-encoding"] = "identity"
        agent, role = st.identity.agent_id, st.identity.role

        def visible(name: str) -> bool:
            return self.engine.visible(agent, role, f"tool:{name}", "call")

        try:
            text = (flow.request.get_content() or b"").decode("utf-8")
            result = fmt.offered_tools(text, st.body, visible)
        except ValueError:  # not UTF-8 or not read member by member: the body is written anew
            result = fmt.offered_tools(json.dumps(st.body), st.body, visible)
        if result.hidden:
            st.attributes[semconv.BASTION_TOOLS_HIDDEN] = result.hidden
        if result.forced is not None:
            request = PolicyRequest(agent, role, f"tool:{result.forced}", "call")
            decision = self.engine.decide(request)
            if decision.allowed:  # visible() and decide() disagree: the tool stays hidden
                decision = deny("tool-not-offered", f"{request.obj} is not offered to agent {agent}")
            message = f"The request forces a tool the agent may not call. {refusal_message(request, decision)}"
            refuse(flow, decision, 403, message, refusal_code(decision))
        elif result.text is not None:
            flow.request.content = result.text.encode()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        st, response = state(flow), flow.response
        fmt = _format(st)
        if fmt is None or response is None or not 200 <= response.status_code < 300 or not is_event_stream(response):
            return
        judge = self._judge(st)
        if judge is None:
            return
        assert fmt.rewriter is not None
        rewriter = fmt.rewriter(judge, self.settings.block)
        inner = response.stream if callable(response.stream) else None
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            message = f"Bastion cannot check the tool calls of a {encoding}-encoded event stream."
            response.stream = closed_stream(rewriter.error(message, CHECK_FAILED_CODE), inner)
            response.headers.pop("content-encoding", None)
        else:
            response.stream = stream_callback(rewriter, inner)
        response.headers.pop("content-length", None)

    def response(self, flow: http.HTTPFlow) -> None:
        st, response = state(flow), flow.response
        fmt = _format(st)
        if fmt is None or response is None or response.stream or not 200 <= response.status_code < 300:
            return
        if "json" not in response.headers.get("content-type", ""):
            return
        try:
            body = jsonlimits.loads(response.get_content() or b"")
        except ValueError:
            return
        judge = self._judge(st)
        if judge is None:
            return
        govern = fmt.govern
        assert govern is not None
        denied = [v for answer in fmt.answers(body) for v in govern(answer, judge) if not v.allowed]
        if not denied:
            return
        if self.settings.block:
            flow.response = error_response(fmt, 403, blocked_message(denied), blocked_code(denied))
        else:
            response.content = json.dumps(body).encode()

    def _judge(self, st: CallState) -> Judge | None:
        if st.identity is None or st.call is None:
            return None
        parent = st.span  # kept: the call's span is gone from the state when a stream's last flush runs
        agent = st.identity.agent_id
        trust = self.live.current.provenance
        try:
            conversation = st.conversation()
        except Exception:  # then every argument is of the model's making, never the user's
            log.exception("could not read the conversation for provenance")
            conversation = Conversation()
        # The conversation's earlier calls, and those allowed earlier in this response.
        session = [conversation_facts(conversation.calls)]

        def facts(name: str, args: dict[str, Any]) -> tuple[Provenance, SessionFacts]:
            prov = provenance.trace(conversation, args, trust)
            self.links.remember(agent, name, args, Linked(prov, session[0]))
            return prov, session[0]

        def record(verdict: Verdict) -> None:
            if verdict.allowed:
                session[0] = session[0].plus(verdict.request.obj, verdict.request.args)
            self._record(parent, st, verdict)

        return Judge(self.engine.decide, agent, st.identity.role, record, facts)

    def _record(self, parent: Span | None, st: CallState, verdict: Verdict) -> None:
        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(SPAN_NAME, context=context, kind=SpanKind.INTERNAL)
        try:
            if span.is_recording():
                span.set_attributes(attributes(st, verdict))
        finally:
            span.end()


def _format(st: CallState) -> ApiFormat | None:
    """The call's format, when it has tool calls to govern."""
    fmt = st.format
    return fmt if fmt is not None and fmt.govern is not None and fmt.rewriter is not None else None


def attributes(st: CallState, verdict: Verdict) -> dict[str, Any]:
    """The span attributes of one tool-call decision."""
    attrs: dict[str, Any] = {
        semconv.GEN_AI_OPERATION_NAME: semconv.OPERATION_APPLY_GUARDRAIL,
        semconv.GEN_AI_TOOL_NAME: verdict.call.name,
        semconv.GEN_AI_SECURITY_TARGET_TYPE: semconv.TARGET_TOOL_CALL,
        semconv.BASTION_CALL_KIND: semconv.KIND_TOOL,
        semconv.BASTION_AGENT_ID: verdict.request.agent_id,
        semconv.BASTION_AGENT_ROLE: verdict.request.role,
        **decision_attributes(verdict.decision),
        **request_attributes(verdict.request),
    }
    if verdict.call.id:
        attrs[semconv.GEN_AI_TOOL_CALL_ID] = verdict.call.id
        attrs[semconv.GEN_AI_SECURITY_TARGET_ID] = verdict.call.id
    if st.format is not None:
        attrs[semconv.GEN_AI_PROVIDER_NAME] = st.format.provider_name
    if st.route is not None:
        attrs[semconv.BASTION_ROUTE] = st.route.name
    return attrs
