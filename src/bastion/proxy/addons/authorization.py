"""The policy decision: allowed calls go on; denied ones get a 403 naming the rule.

A review is left to the hold addon (HoldForApproval), which holds the call for a human or refuses
it with its own error code when no approvals are configured.
"""

from __future__ import annotations

from mitmproxy import http

from bastion.proxy.decision import Decision, Effect, PolicyRequest, refusal_code, refusal_message
from bastion.proxy.hold import Hold
from bastion.proxy.policy import PolicyEngine
from bastion.proxy.state import answered, refuse, state


class Authorize:
    def __init__(self, engine: PolicyEngine) -> None:
        self.engine = engine

    def request(self, flow: http.HTTPFlow) -> None:
        if answered(flow):
            return
        st = state(flow)
        if st.identity is None or st.call is None or st.decision is not None:
            return
        call = st.call
        request = PolicyRequest(st.identity.agent_id, st.identity.role, call.policy_object, call.policy_action)
        st.decision = decision = self.engine.decide(request)
        # The call's format answers for itself (refuse() asks it); a plain HTTP call, by its provider.
        provider = None if st.format is not None else call.provider
        if decision.effect is Effect.REVIEW:

            def answer(refusal: Decision, message: str, code: str) -> None:
                refuse(flow, refusal, 403, message, code, provider)

            st.hold = Hold(request, decision, answer)
        elif not decision.allowed:
            refuse(flow, decision, 403, refusal_message(request, decision), refusal_code(decision), provider)
