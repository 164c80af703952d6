"""Budgets refuse model calls once an agent's (role's, key's) budget is spent; Cost prices each call.

``Budgets`` runs after the policy decided and before any human is asked: a model call whose budget
is spent is refused with 429 ``budget_exceeded`` in the caller's API format, with ``Retry-After`` (when
the period resets) and ``x-should-retry: false`` (so the OpenAI and Anthropic SDKs do not retry at
once), recorded as a decision with rule ``budget:<name>``. ``Cost`` runs when the response is read:
it records ``bastion.cost.usd`` on the call's span and charges the proxy's local tally.
"""

from __future__ import annotations

import logging

from mitmproxy import http

from bastion import semconv
from bastion.proxy import jsonlimits
from bastion.proxy.budget_guard import EXCEEDED_CODE, BudgetGuard
from bastion.proxy.decision import deny
from bastion.proxy.state import answered, refuse, state
from bastion.proxy.stream_usage import ask_for_usage, body_bytes, without_usage_chunk

log = logging.getLogger(__name__)
# flow.metadata key: Cost asked a streamed chat completion for usage the agent had not asked for.
_ASKED = "bastion.cost.asked_usage"


class Budgets:
    def __init__(self, guard: BudgetGuard) -> None:
        self.guard = guard

    def running(self) -> None:
        self.guard.start()

    async def done(self) -> None:
        await self.guard.stop()

    def request(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if answered(flow) or st.identity is None or st.call is None or st.call.kind != semconv.KIND_MODEL:
            return
        if st.decision is None or not (st.decision.allowed or st.hold is not None):
            return
        refusal = self.guard.check(st.identity)
        if refusal is None:
            return
        st.hold = None  # no human is asked about a call the budget refuses
        decision = deny(refusal.budget.rule, refusal.message.removeprefix("Bastion: "))
        refuse(flow, decision, 429, refusal.message, refusal.code, retry_after=refusal.retry_after)
        if refusal.code == EXCEEDED_CODE and flow.response is not None:
            flow.response.headers["x-should-retry"] = "false"  # the SDKs' backoff would only waste calls


class Cost:
    def __init__(self, guard: BudgetGuard) -> None:
        self.guard = guard

    def request(self, flow: http.HTTPFlow) -> None:
        """With budgets, a streamed OpenAI chat completion asks for usage (after every addon that
        rewrites the body: Redaction, ToolCalls), so that it can be counted."""
        st = state(flow)
        call = st.call
        if answered(flow) or not self.guard.budgets or call is None or not call.stream:
            return
        if call.kind != semconv.KIND_MODEL or call.provider != "openai" or call.endpoint != "chat.completions":
            return
        try:
            asked = ask_for_usage(jsonlimits.loads(flow.request.content or b""))
        except ValueError:
            return
        if asked is not None:
            flow.request.content = body_bytes(asked)
            flow.metadata[_ASKED] = True

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """Wraps every other stream callback: the agent does not get the usage chunk it did not ask for."""
        response = flow.response
        if flow.metadata.get(_ASKED) and response is not None and callable(response.stream):
            response.stream = without_usage_chunk(response.stream)

    def response(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st.call is None or st.call.kind != semconv.KIND_MODEL or st.identity is None:
            return
        if st.decision is None or not st.decision.allowed:
            return
        usage = st.usage
        if usage.input_tokens is None and usage.output_tokens is None:
            return
        try:
            dollars = self.guard.prices.cost(usage.response_model or st.call.model, usage)
            if dollars is not None:
                st.attributes[semconv.BASTION_COST_USD] = round(dollars, 9)
            tokens = (usage.input_tokens or 0) + (usage.output_tokens or 0)
            self.guard.charge(st.identity, tokens, dollars or 0.0)
        except Exception:  # telemetry and tallies never break traffic
            log.exception("could not price the call")
