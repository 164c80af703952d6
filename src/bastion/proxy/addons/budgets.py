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
from bastion.proxy.budget_guard import EXCEEDED_CODE, BudgetGuard
from bastion.proxy.decision import deny
from bastion.proxy.errors import error_response
from bastion.proxy.state import answered, state

log = logging.getLogger(__name__)


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
        st.decision = deny(refusal.budget.rule, refusal.message.removeprefix("Bastion: "))
        response = error_response(st.call.provider, 429, refusal.message, refusal.code)
        response.headers["retry-after"] = str(refusal.retry_after)
        if refusal.code == EXCEEDED_CODE:
            response.headers["x-should-retry"] = "false"
        flow.response = response


class Cost:
    def __init__(self, guard: BudgetGuard) -> None:
        self.guard = guard

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
