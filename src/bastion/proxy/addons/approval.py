"""Reviews are held here for a human's decision, while every other call flows on.

The deciding addon leaves a review decision and a :class:`~bastion.proxy.hold.Hold` in the call's
state; this is the one place that holds or refuses it. Without approvals (no collector control, or
none configured in ``bastion.yaml``) the review is refused at once with ``approval_required``.
Otherwise this addon asks the collector for an approval (with the call's context, passed through ``audit_payload``),
long-polls for the decision, and then resumes the call (approved) or refuses it with the
approver's reason (denied), ``approval_timeout`` (no decision in time) or, when the agent went
away meanwhile, records the approval as abandoned. The outcome goes into the call's span.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
from mitmproxy import http
from mitmproxy.connection import ConnectionState

from bastion import semconv
from bastion.approval_config import call_digest
from bastion.proxy.audit_payload import audit_payload
from bastion.proxy.control import WAIT_SLICE_SECONDS, Control
from bastion.proxy.decision import REVIEW_CODE, Decision, Effect, refusal_message
from bastion.proxy.hold import Hold
from bastion.proxy.state import CallState, answered, state

log = logging.getLogger(__name__)
DENIED_CODE = "approval_denied"
TIMEOUT_CODE = "approval_timeout"
ABANDONED_CODE = "approval_abandoned"
UNAVAILABLE_CODE = "approval_unavailable"
MISMATCH_CODE = "approval_mismatch"


def context(flow: http.HTTPFlow, st: CallState, hold: Hold, control: Control) -> dict[str, Any]:
    """What the approver sees: who, what, with which arguments, why it is held, and where to look."""
    assert st.identity is not None and st.call is not None
    call, request, rule = st.call, hold.request, control.config.for_rule(hold.decision.rule)
    if call.kind == semconv.KIND_MODEL:
        arguments: Any = {"model": call.model, "stream": call.stream}
        fmt = st.format
        messages = fmt.last_messages(st.body, control.config.context_messages) if fmt is not None else []
    elif call.kind == semconv.KIND_MCP:
        arguments, messages = request.args, []
    else:
        arguments, messages = {"method": call.method, "host": call.host, "path": call.path}, []
    span_context = st.span.get_span_context() if st.span is not None else None
    valid = span_context is not None and span_context.is_valid
    return {
        "agent_id": st.identity.agent_id,
        "role": st.identity.role,
        "kind": call.kind,
        "target": request.obj,
        "action": request.act,
        "arguments": audit_payload(arguments),
        # In clear for the approver's eyes only: the collector seals it and drops it once decided.
        "arguments_clear": arguments,
        "messages": audit_payload(messages),
        "rule": hold.decision.rule,
        "reason": hold.decision.reason,
        "policy_version": hold.decision.policy_version,
        "trace_id": f"{span_context.trace_id:032x}" if valid and span_context else None,
        "span_id": f"{span_context.span_id:016x}" if valid and span_context else None,
        "proxy": control.proxy_name,
        "timeout_seconds": rule.timeout_seconds,
    }


def connected(flow: http.HTTPFlow) -> bool:
    """Whether the agent still waits: mitmproxy keeps ``flow.live`` while a hook runs, but the
    client connection stops being readable once the agent hangs up (HTTP/1; an HTTP/2 stream's
    reset is not seen until the hook returns)."""
    return flow.live and bool(flow.client_conn.state & ConnectionState.CAN_READ)


class HoldForApproval:
    def __init__(self, control: Control | None = None) -> None:
        self.control = control

    async def request(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        hold, st.hold = st.hold, None
        if hold is None or answered(flow):
            return
        control = self.control
        if control is None or not control.holds_reviews():  # read per call: bastion.yaml may change
            hold.answer(hold.decision, refusal_message(hold.request, hold.decision), REVIEW_CODE)
            return
        started = time.monotonic()
        deadline = started + control.config.for_rule(hold.decision.rule).timeout_seconds
        try:
            await self._wait(flow, st, hold, control, deadline)
        finally:
            st.held_seconds = time.monotonic() - started

    async def _wait(self, flow: http.HTTPFlow, st: CallState, hold: Hold, control: Control, deadline: float) -> None:
        try:
            # Off the event loop: the context is redacted for the store, which may run NER.
            details = await asyncio.to_thread(context, flow, st, hold, control)
            record = await control.create(details)
            st.attributes[semconv.BASTION_APPROVAL_ID] = record["id"]
            while record["status"] == "pending":
                remaining = deadline - time.monotonic()
                if not connected(flow):
                    record = await control.close(record["id"], "abandoned")
                elif hold.request.agent_id in control.suspended:  # the kill switch ends the wait too
                    record = await control.close(record["id"], "abandoned")
                    record = {**record, "suspended": True}
                elif remaining <= 0:
                    record = await control.close(record["id"], "timeout")
                else:
                    record = await control.wait(record["id"], min(remaining, WAIT_SLICE_SECONDS))
        except (httpx.HTTPError, ValueError, KeyError) as e:
            log.warning("approval for %s could not be asked or awaited: %s", hold.request.obj, e)
            self._refuse(st, hold, "unavailable", UNAVAILABLE_CODE, f"the approvals service is unavailable ({e})")
            return
        self._finish(flow, st, hold, record, details["arguments_clear"])

    def _finish(
        self, flow: http.HTTPFlow, st: CallState, hold: Hold, record: dict[str, Any], clear_arguments: Any
    ) -> None:
        status = str(record["status"])
        approver, reason = record.get("approver") or "", record.get("decision_reason") or ""
        st.attributes[semconv.BASTION_APPROVAL_STATUS] = status
        if approver:
            st.attributes[semconv.BASTION_APPROVAL_APPROVER] = approver
            st.attributes[semconv.BASTION_APPROVAL_REASON] = reason
        if record.get("grant"):
            st.attributes[semconv.BASTION_APPROVAL_GRANT] = record["grant"]
        decision = hold.decision
        request = hold.request
        if status == "approved" and record.get("call_digest") != call_digest(
            request.agent_id, request.obj, request.act, clear_arguments
        ):
            # An approval lets through the call it was asked for, and no other.
            self._refuse(st, hold, "mismatch", MISMATCH_CODE, "the approval was given for a different call")
            return
        if status == "approved":
            text = f"approved by {approver} under rule '{decision.rule}': {reason}".rstrip(": ")
            st.decision = Decision(Effect.ALLOW, decision.rule, text, decision.policy_version)
            hold.resume()
            return
        if status == "denied":
            self._refuse(st, hold, status, DENIED_CODE, f"denied by approver {approver}: {reason or 'no reason given'}")
        elif status == "timeout":
            seconds = record.get("timeout_seconds")
            self._refuse(st, hold, status, TIMEOUT_CODE, f"no approver decided within {seconds} seconds")
        elif record.get("suspended"):
            self._refuse(st, hold, status, ABANDONED_CODE, "the agent was suspended while the call was held")
        else:
            self._refuse(st, hold, status, ABANDONED_CODE, "the agent disconnected while the call was held")

    def _refuse(self, st: CallState, hold: Hold, status: str, code: str, why: str) -> None:
        decision, request = hold.decision, hold.request
        st.attributes[semconv.BASTION_APPROVAL_STATUS] = status
        message = (
            f"Bastion held {request.act} on {request.obj} for approval (rule '{decision.rule}'), "
            f"and it was refused: {why}."
        )
        hold.answer(Decision(Effect.DENY, decision.rule, why, decision.policy_version), message, code)
