"""A human steps in: suspended agents are refused, and guidance reaches an agent's next model call.

``Suspension`` runs as soon as the agent is known and refuses every call of a suspended agent
(``agent_suspended``). ``Guidance`` runs on allowed model calls: when a human left guidance for
the agent, one proxy claims it from the collector (so it is delivered once) and adds it to the
request as instructions. Both are recorded on the call's span.
"""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
from mitmproxy import http

from bastion import semconv
from bastion.proxy.audit_payload import audit_payload
from bastion.proxy.control import Control
from bastion.proxy.decision import Decision, Effect
from bastion.proxy.state import answered, refuse, state

log = logging.getLogger(__name__)
SUSPENDED_CODE = "agent_suspended"
SUSPENDED_RULE = "agent-suspended"


class Suspension:
    def __init__(self, control: Control) -> None:
        self.control = control

    def running(self) -> None:
        self.control.start()

    async def done(self) -> None:
        await self.control.stop()

    def request(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if answered(flow) or st.identity is None or st.route is None:
            return
        agent = st.identity.agent_id
        if agent not in self.control.suspended:
            return
        reason = self.control.suspended[agent] or "no reason given"
        message = f"Bastion: agent {agent} is suspended by a human supervisor ({reason}); every call is refused."
        refuse(flow, Decision(Effect.DENY, SUSPENDED_RULE, f"agent suspended: {reason}"), 403, message, SUSPENDED_CODE)


class Guidance:
    def __init__(self, control: Control) -> None:
        self.control = control

    async def request(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        fmt = st.format
        if answered(flow) or st.identity is None or fmt is None or fmt.with_guidance is None:
            return
        waiting = self.control.guidance.get(st.identity.agent_id)
        if not waiting or not isinstance(st.body, dict) or st.decision is None or not st.decision.allowed:
            return
        for guidance_id in list(waiting):
            try:
                claimed = await self.control.claim(st.identity.agent_id, guidance_id)
            except httpx.HTTPError as e:
                log.warning("could not claim guidance %s: %s", guidance_id, e)
                return
            if guidance_id in waiting:
                waiting.remove(guidance_id)
            if claimed is None:
                continue
            body = fmt.with_guidance(st.body, str(claimed["text"]))
            if body is None:
                return
            st.body = body
            flow.request.content = json.dumps(body).encode()
            st.attributes[semconv.BASTION_GUIDANCE_ID] = guidance_id
            redacted = await asyncio.to_thread(audit_payload, claimed["text"])  # may run NER: off the loop
            st.attributes[semconv.BASTION_GUIDANCE_TEXT] = str(redacted)[:4000]
            return
