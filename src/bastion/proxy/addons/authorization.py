"""The policy decision: allowed calls go on; denied ones get a 403 naming the rule.

A review (hold for a human) is left to HoldForApproval when approvals are configured, and is
otherwise refused with its own error code.
"""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy import http

from bastion.proxy.decision import Effect, PolicyRequest, refusal_code, refusal_message
from bastion.proxy.errors import error_response
from bastion.proxy.hold import Hold
from bastion.proxy.policy import PolicyEngine
from bastion.proxy.state import answered, state


class Authorize:
    def __init__(self, engine: PolicyEngine, hold_reviews: Callable[[], bool] | None = None) -> None:
        self.engine = engine
        # Whether approvals are on (read per call: bastion.yaml may change while running).
        self.hold_reviews = hold_reviews

    def request(self, flow: http.HTTPFlow) -> None:
        if answered(flow):
            return
        st = state(flow)
        if st.identity is None or st.call is None or st.decision is not None:
            return
        call = st.call
        request = PolicyRequest(st.identity.agent_id, st.identity.role, call.policy_object, call.policy_action)
        st.decision = decision = self.engine.decide(request)
        if decision.effect is Effect.REVIEW and self.hold_reviews is not None and self.hold_reviews():
            caller = st.format or call.provider

            def answer(message: str, code: str) -> None:
                flow.response = error_response(caller, 403, message, code)

            st.hold = Hold(request, decision, answer)
            return
        if not decision.allowed:
            message = refusal_message(request, decision)
            flow.response = error_response(st.format or call.provider, 403, message, refusal_code(decision))
