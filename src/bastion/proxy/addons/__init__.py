"""The proxy's addons, in the order they run for each hook."""

from __future__ import annotations

from opentelemetry.trace import Tracer

from bastion.proxy.addons.authorization import Authorize
from bastion.proxy.addons.classification import Classify
from bastion.proxy.addons.forwarding import Forward
from bastion.proxy.addons.health import Health
from bastion.proxy.addons.identity import Identify
from bastion.proxy.addons.routing import Routing
from bastion.proxy.addons.streaming import ResponseStream
from bastion.proxy.addons.tracing import Tracing
from bastion.proxy.addons.validation import Validate
from bastion.proxy.config import GatewayConfig
from bastion.proxy.keys import KeyStore
from bastion.proxy.policy import PolicyEngine


def default_addons(
    config: GatewayConfig, keys: KeyStore, engine: PolicyEngine, tracer: Tracer, max_body_bytes: int
) -> list[object]:
    return [
        Health(),
        Routing(config),
        Identify(keys),
        Validate(max_body_bytes),
        Classify(),
        Authorize(engine),
        Forward(),
        ResponseStream(),
        # Last, so that it records what every addon before it decided.
        Tracing(tracer),
    ]
