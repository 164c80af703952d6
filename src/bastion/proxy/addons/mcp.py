"""MCP messages: each ``tools/call`` is decided by policy, with its arguments, before the server sees it.

A refused call is answered here with a JSON-RPC error carrying the request's id, in the form the
client's revision expects (an SSE ``message`` event where the server would have streamed, plain
JSON otherwise); a review is left to the hold addon, with the means to answer it alike. Every other
message passes through as it came, with the proxy span's trace context added to ``params._meta``
of requests. Malformed JSON-RPC gets a JSON-RPC error from the proxy.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from mitmproxy import http
from opentelemetry import trace
from opentelemetry.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bastion import semconv
from bastion.proxy import mcp
from bastion.proxy.classify import mcp_call
from bastion.proxy.config import GatewayConfig, LiveConfig, live
from bastion.proxy.decision import Decision, Effect, PolicyRequest, allow, refusal_code, refusal_message
from bastion.proxy.hold import Hold
from bastion.proxy.objects import tool_object
from bastion.proxy.policy import PolicyEngine
from bastion.proxy.provenance import ProvenanceLinks, unknown_provenance
from bastion.proxy.session import SessionStore
from bastion.proxy.sse import is_event_stream
from bastion.proxy.state import CallState, answered, mcp_server, refuse_with, state
from bastion.proxy.telemetry import request_attributes, start_call_span

log = logging.getLogger(__name__)
PROTOCOL_RULE = "mcp-protocol"
SESSIONS_REMEMBERED = 10_000
# The refusal's code, rule and policy version, in the _meta of a refused call's tool result.
REFUSAL_META = "bastion/refusal"
# flow.metadata key: the tools/call request just decided, for its record.
_DECIDED = "bastion.mcp.decided"
_propagator = TraceContextTextMapPropagator()


class McpGovernance:
    def __init__(
        self,
        engine: PolicyEngine,
        tracer: Tracer,
        config: GatewayConfig | LiveConfig,
        links: ProvenanceLinks | None = None,
        sessions: SessionStore | None = None,
    ) -> None:
        self.engine = engine
        self.tracer = tracer
        self.live = live(config)
        # The provenance of tool calls models emitted (ToolCalls), and each MCP session's calls.
        self.links = links if links is not None else ProvenanceLinks()
        self.sessions = sessions if sessions is not None else SessionStore()
        # Session id -> whether its server answered POSTs with SSE, to answer refusals alike.
        self._streams: OrderedDict[str, bool] = OrderedDict()

    @property
    def refusals(self) -> str:
        """tool_result: a refused tools/call is a tool result with isError; jsonrpc_error: an error
        (bastion.yaml's mcp_refusals, as in force now)."""
        return self.live.current.mcp_refusals

    async def request(self, flow: http.HTTPFlow) -> None:
        self._decide(flow)
        decided = flow.metadata.pop(_DECIDED, None)
        if isinstance(decided, PolicyRequest):
            try:  # redacting the arguments for the record may run NER: off the event loop
                state(flow).attributes.update(await asyncio.to_thread(request_attributes, decided))
            except Exception:  # telemetry never breaks traffic
                log.exception("could not record a tool call's arguments and provenance")

    def _decide(self, flow: http.HTTPFlow) -> None:
        server = mcp_server(flow)
        st = state(flow)
        if answered(flow) or server is None or st.identity is None:
            return
        headers = flow.request.headers
        for name, key in (
            (mcp.SESSION_HEADER, semconv.MCP_SESSION_ID),
            (mcp.PROTOCOL_HEADER, semconv.MCP_PROTOCOL_VERSION),
        ):
            if value := headers.get(name):
                st.attributes[key] = value
        method = flow.request.method
        if method == "POST":
            self._post(flow, st)
            return
        # The GET stream, or DELETE ending a session: passed on as they are.
        endpoint = {"GET": "GET stream", "DELETE": "DELETE session"}.get(method, method)
        st.call = mcp_call(endpoint, None, server.route.upstream.host, st.upstream_path, method)
        st.decision = self._protocol(endpoint)

    def _post(self, flow: http.HTTPFlow, st: CallState) -> None:
        assert st.route is not None
        host, path = st.route.upstream.host, st.upstream_path
        try:
            messages, batch = mcp.read(flow.request.get_content() or b"")
        except ValueError as e:  # a JsonRpcError, or a body whose content-encoding does not decode
            error = e if isinstance(e, mcp.JsonRpcError) else mcp.JsonRpcError(mcp.PARSE_ERROR, f"Parse error: {e}")
            st.call = mcp_call("invalid", None, host, path, "POST")
            self._reject(flow, error)
            return
        if batch:
            st.call = mcp_call("batch", None, host, path, "POST")
            if any(m.method in (mcp.TOOLS_CALL, mcp.TOOLS_LIST) for m in messages):
                text = "Invalid Request: Bastion takes tools/call and tools/list one at a time, not in a batch."
                self._reject(flow, mcp.JsonRpcError(mcp.INVALID_REQUEST, text))
            else:
                st.decision = self._protocol("batch")
            return
        message = messages[0]
        if message.method is not None:
            st.attributes[semconv.MCP_METHOD_NAME] = message.method
        if message.is_request:
            st.attributes[semconv.JSONRPC_REQUEST_ID] = str(message.id)
        if message.method == mcp.TOOLS_CALL:
            self._tool_call(flow, st, message)
            return
        endpoint = message.method or "response"  # a response: the client answering sampling or elicitation
        st.call = mcp_call(endpoint, None, host, path, "POST")
        st.decision = self._protocol(endpoint)
        self._continue_trace(flow, st, message)

    def _tool_call(self, flow: http.HTTPFlow, st: CallState, message: mcp.Message) -> None:
        assert st.identity is not None and st.route is not None
        try:
            name, arguments = mcp.tool_call(message)
        except mcp.JsonRpcError as e:
            st.call = mcp_call(mcp.TOOLS_CALL, "", st.route.upstream.host, st.upstream_path, "POST")
            self._reject(flow, e)
            return
        st.call = mcp_call(mcp.TOOLS_CALL, name, st.route.upstream.host, st.upstream_path, "POST")
        st.attributes[semconv.GEN_AI_TOOL_NAME] = name
        st.attributes[semconv.GEN_AI_TOOL_CALL_ID] = str(message.id)
        st.attributes[semconv.GEN_AI_SECURITY_TARGET_TYPE] = semconv.TARGET_TOOL_CALL
        server = mcp_server(flow)
        obj = tool_object(name, server.name if server is not None else None)
        agent = st.identity.agent_id
        # Linked to the model call that emitted it (same agent, tool and arguments), else unknown.
        linked = self.links.find(agent, name, arguments)
        prov = linked.prov if linked is not None else unknown_provenance(arguments)
        # Sessionless (2026-07-28 revision) calls count as one session per agent.
        session = f"{agent}\x00{flow.request.headers.get(mcp.SESSION_HEADER, '')}"
        facts = self.sessions.facts(session)
        if linked is not None and len(linked.session.calls) > len(facts.calls):
            facts = linked.session  # the emitting conversation knows more of what came before
        request = PolicyRequest(agent, st.identity.role, obj, "call", arguments, prov, facts)
        st.decision = decision = self.engine.decide(request)
        flow.metadata[_DECIDED] = request  # recorded on the span by request(), off the event loop
        if decision.allowed:
            self.sessions.add(session, obj, arguments)
            self._continue_trace(flow, st, message)
            return
        if decision.effect is Effect.REVIEW:
            self._continue_trace(flow, st, message)  # the approval links to the span the call keeps

            def answer(refusal: Decision, text: str, code: str) -> None:
                if refusal.effect is Effect.REVIEW:  # refused at once: no approvals configured
                    self._refuse_by_policy(flow, message, name, request, refusal)
                else:  # held, then refused (by an approver, a timeout, ...)
                    self._refuse(flow, message, refusal, mcp.POLICY_DENIED, text, code)

            st.hold = Hold(request, decision, answer)
            return
        self._refuse_by_policy(flow, message, name, request, decision)

    def _refuse_by_policy(
        self, flow: http.HTTPFlow, message: mcp.Message, name: str, request: PolicyRequest, decision: Decision
    ) -> None:
        code = mcp.APPROVAL_REQUIRED if decision.effect is Effect.REVIEW else mcp.POLICY_DENIED
        text = refusal_message(request, decision)
        if self.refusals == "tool_result":
            text = f"The tool {name} was not run. {text} {_what_to_do(decision)}"
        self._refuse(flow, message, decision, code, text, refusal_code(decision))

    def _refuse(
        self, flow: http.HTTPFlow, message: mcp.Message, decision: Decision, rpc_code: int, text: str, code: str
    ) -> None:
        """A refused tools/call: a tool result with isError by default, else a JSON-RPC error."""
        data = {"code": code, "rule": decision.rule, "policy_version": decision.policy_version}
        state(flow).attributes[semconv.ERROR_TYPE] = code
        if self.refusals == "tool_result":
            modern = mcp.is_modern(flow.request.headers)
            payload = mcp.tool_error(message.id, text, {REFUSAL_META: data}, modern=modern)
        else:
            payload = mcp.error(message.id, rpc_code, text, data)
        refuse_with(flow, decision, self._answer(flow, payload, code))

    def _protocol(self, endpoint: str) -> Decision:
        return allow(PROTOCOL_RULE, f"MCP {endpoint}: only tools/call is decided by policy")

    def _reject(self, flow: http.HTTPFlow, error: mcp.JsonRpcError) -> None:
        """Bad input: HTTP 400 with the JSON-RPC error, as MCP servers answer it."""
        code = "invalid_jsonrpc" if error.code != mcp.INVALID_PARAMS else "invalid_params"
        decision = Decision(Effect.ERROR, code, error.message)
        if error.code == mcp.INVALID_PARAMS and error.request_id is not None:
            refuse_with(
                flow, decision, self._answer(flow, mcp.error(error.request_id, error.code, error.message), code)
            )
            return
        body = mcp.encode(mcp.error(error.request_id, error.code, error.message))
        headers = {"content-type": "application/json", "x-bastion-error": code}
        refuse_with(flow, decision, http.Response.make(400, body, headers))

    def _answer(self, flow: http.HTTPFlow, payload: mcp.Json, code: str) -> http.Response:
        """A JSON-RPC answer to a request, as an SSE event or as JSON, whichever its server would send."""
        headers = flow.request.headers
        session = headers.get(mcp.SESSION_HEADER)
        streams = self._streams.get(session, True) if session else True
        if not mcp.is_modern(headers) and mcp.accepts_sse(headers) and streams:
            body, content_type = mcp.sse_event(payload), "text/event-stream"
        else:
            body, content_type = mcp.encode(payload), "application/json"
        response_headers = {"content-type": content_type, "cache-control": "no-cache", "x-bastion-error": code}
        if session:
            response_headers[mcp.SESSION_HEADER] = session
        return http.Response.make(200, body, response_headers)

    def _continue_trace(self, flow: http.HTTPFlow, st: CallState, message: mcp.Message) -> None:
        """Continue the trace context in ``params._meta`` and pass the proxy span's own on in its place."""
        if st.span is None or not message.is_request:
            return
        try:
            parent = _propagator.extract(mcp.trace_carrier(message))
            if trace.get_current_span(parent).get_span_context().is_valid:
                carrier = start_call_span(self.tracer, flow, parent)  # the message names its own parent
            else:
                carrier = {}
                _propagator.inject(carrier, context=trace.set_span_in_context(st.span))
        except Exception:  # telemetry never breaks the call: it goes on as it came
            log.exception("could not continue the trace context in params._meta")
            return
        flow.request.set_content(mcp.encode(mcp.with_trace_context(message, carrier)))

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or mcp_server(flow) is None or "x-bastion-error" in response.headers:
            return
        st = state(flow)
        session = response.headers.get(mcp.SESSION_HEADER) or flow.request.headers.get(mcp.SESSION_HEADER)
        if session:
            st.attributes[semconv.MCP_SESSION_ID] = session
        if session and flow.request.method == "POST" and response.status_code == 200:
            self._streams[session] = is_event_stream(response)
            self._streams.move_to_end(session)
            if len(self._streams) > SESSIONS_REMEMBERED:
                self._streams.popitem(last=False)


def _what_to_do(decision: Decision) -> str:
    if decision.effect is Effect.REVIEW:
        return (
            "It needs a human's approval, which cannot be asked for here: tell the user, and do not retry it unchanged."
        )
    return (
        "Do not retry it with the same arguments: tell the user the call was refused by policy, "
        "or do the task in a way the policy allows."
    )
