"""The policy decision: allowed calls go on, denied ones get a 403 naming the rule."""

from __future__ import annotations

from mitmproxy import http

from bastion.proxy.errors import error_response
from bastion.proxy.policy import PolicyEngine
from bastion.proxy.state import answered, state


class Authorize:
    def __init__(self, engine: PolicyEngine) -> None:
        self.engine = engine

    def request(self, flow: http.HTTPFlow) -> None:
        if answered(flow):
            return
        st = state(flow)
        if st.identity is None or st.call is None:
            return
        call = st.call
        st.decision = decision = self.engine.decide(
            st.identity.agent_id, st.identity.role, call.policy_object, call.policy_action
        )
        if not decision.allowed:
            message = (
                f"Bastion policy denied {call.policy_action} on {call.policy_object}: {decision.reason} "
                f"(policy version {decision.policy_version})."
            )
            flow.response = error_response(call.provider, 403, message, "policy_denied")
