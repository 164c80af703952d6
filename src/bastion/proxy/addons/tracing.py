"""One OpenTelemetry span per call, continuing the agent's W3C trace context; one per CONNECT
decision and one per TCP flow inside a tunnel.

Telemetry never breaks traffic: every step here is guarded, and failures are only logged.
"""

from __future__ import annotations

import logging
from typing import Any

from mitmproxy import http, tcp
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bastion import semconv
from bastion.proxy.state import INTERNAL, CallState, state
from bastion.proxy.telemetry import decision_attributes, start_call_span

log = logging.getLogger(__name__)
_propagator = TraceContextTextMapPropagator()


class Tracing:
    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(INTERNAL):
            return
        try:
            start_call_span(self.tracer, flow, _propagator.extract(carrier=dict(flow.request.headers)))
        except Exception:
            log.exception("could not start a span")

    def response(self, flow: http.HTTPFlow) -> None:
        self._finish(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._finish(flow)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """A CONNECT is decided at once: its span starts and ends here."""
        st = state(flow)
        if st.decision is None:
            return
        try:
            host, port = flow.request.host, flow.request.port
            start = int(flow.request.timestamp_start * 1e9)
            span = self.tracer.start_span(
                f"CONNECT {host}:{port}", context=Context(), kind=SpanKind.CLIENT, start_time=start
            )
        except Exception:
            log.exception("could not start a span")
            return
        try:
            if span.is_recording():
                attrs = tunnel_attributes(host, port, semconv.KIND_CONNECT, st)
                attrs[semconv.HTTP_REQUEST_METHOD] = "CONNECT"
                if (response := flow.response) is not None:
                    attrs[semconv.HTTP_RESPONSE_STATUS_CODE] = response.status_code
                    attrs[semconv.ERROR_TYPE] = response.headers.get("x-bastion-error") or str(response.status_code)
                span.set_attributes(attrs)
        except Exception:
            log.exception("could not record span attributes")
        finally:
            span.end()

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        try:
            host, port = _address(flow)
            start = int(flow.timestamp_created * 1e9)
            span = self.tracer.start_span(
                f"tcp {host}:{port}", context=Context(), kind=SpanKind.CLIENT, start_time=start
            )
            state(flow).span = span
        except Exception:
            log.exception("could not start a span")

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self._finish_tcp(flow)

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self._finish_tcp(flow)

    def _finish_tcp(self, flow: tcp.TCPFlow) -> None:
        st = state(flow)
        span, st.span = st.span, None
        if span is None:
            return
        try:
            if span.is_recording():
                allowed = st.decision is not None and st.decision.allowed
                attrs = tunnel_attributes(*_address(flow), semconv.KIND_TCP, st)
                if not allowed:
                    attrs[semconv.ERROR_TYPE] = "tcp_refused"
                elif flow.error is not None:
                    attrs[semconv.ERROR_TYPE] = "connection_error"
                    span.set_status(Status(StatusCode.ERROR, flow.error.msg))
                span.set_attributes(attrs)
        except Exception:
            log.exception("could not record span attributes")
        finally:
            span.end()

    def _finish(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        span, st.span = st.span, None
        if span is None:
            return
        try:
            if span.is_recording():
                span.set_attributes(attributes(flow, st))
                if st.call is not None:
                    span.update_name(st.call.span_name)
                if flow.error is not None:
                    span.set_status(Status(StatusCode.ERROR, flow.error.msg))
                elif flow.response is not None and flow.response.status_code >= 500:
                    span.set_status(Status(StatusCode.ERROR, f"HTTP {flow.response.status_code}"))
        except Exception:
            log.exception("could not record span attributes")
        finally:
            span.end()


def attributes(flow: http.HTTPFlow, st: CallState) -> dict[str, Any]:
    """The span attributes for a finished call; absent values are left out."""
    attrs: dict[str, Any] = {
        semconv.HTTP_REQUEST_METHOD: flow.request.method,
        semconv.URL_PATH: flow.request.path.split("?", 1)[0],
        semconv.SERVER_ADDRESS: flow.request.host,
    }
    if st.route is not None:
        attrs[semconv.BASTION_ROUTE] = st.route.name
    if st.identity is not None:
        attrs[semconv.BASTION_AGENT_ID] = st.identity.agent_id
        attrs[semconv.BASTION_AGENT_ROLE] = st.identity.role
        attrs[semconv.BASTION_AGENT_KEY_ID] = st.identity.key_id
    call = st.call
    if call is not None:
        attrs[semconv.BASTION_CALL_KIND] = call.kind
        attrs[semconv.GEN_AI_OPERATION_NAME] = call.operation
        if call.kind == semconv.KIND_MODEL:
            attrs[semconv.GEN_AI_SECURITY_TARGET_TYPE] = semconv.TARGET_LLM_INPUT
            attrs[semconv.GEN_AI_PROVIDER_NAME] = st.format.provider_name if st.format else call.provider
            attrs[semconv.GEN_AI_REQUEST_STREAM] = call.stream
            if call.model:
                attrs[semconv.GEN_AI_REQUEST_MODEL] = call.model
    elif st.route is not None:
        attrs[semconv.BASTION_CALL_KIND] = semconv.KIND_HTTP if st.route.plain_http else semconv.KIND_MODEL
    if st.decision is not None:
        attrs.update(decision_attributes(st.decision))
    usage = st.usage
    optional = {
        semconv.GEN_AI_RESPONSE_MODEL: usage.response_model,
        semconv.GEN_AI_RESPONSE_ID: usage.response_id,
        semconv.GEN_AI_USAGE_INPUT_TOKENS: usage.input_tokens,
        semconv.GEN_AI_USAGE_OUTPUT_TOKENS: usage.output_tokens,
        semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: usage.cache_read_tokens,
        semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: usage.cache_creation_tokens,
        semconv.GEN_AI_RESPONSE_FINISH_REASONS: usage.finish_reasons or None,
    }
    attrs.update({k: v for k, v in optional.items() if v is not None})
    if flow.response is not None:
        status = flow.response.status_code
        attrs[semconv.HTTP_RESPONSE_STATUS_CODE] = status
        if status >= 400:
            attrs[semconv.ERROR_TYPE] = flow.response.headers.get("x-bastion-error") or str(status)
    if flow.error is not None:
        attrs[semconv.ERROR_TYPE] = "connection_error"
    attrs.update(st.attributes)
    return attrs


def _address(flow: tcp.TCPFlow) -> tuple[str, int]:
    address = flow.server_conn.address
    return (str(address[0]), int(address[1])) if address else ("", 0)


def tunnel_attributes(host: str, port: int, kind: str, st: CallState) -> dict[str, Any]:
    """The span attributes of a CONNECT or of raw TCP in a tunnel: where to, who, and the decision."""
    attrs: dict[str, Any] = {
        semconv.SERVER_ADDRESS: host,
        semconv.SERVER_PORT: port,
        semconv.BASTION_CALL_KIND: kind,
    }
    if st.identity is not None:
        attrs[semconv.BASTION_AGENT_ID] = st.identity.agent_id
        attrs[semconv.BASTION_AGENT_ROLE] = st.identity.role
    if st.decision is not None:
        attrs.update(decision_attributes(st.decision))
    attrs.update(st.attributes)
    return attrs
