"""Every limit of ``limits:`` applied to one call, as plain values in and out (no proxy needed).

``Limiter.check`` decides what can be decided at once (open circuits, cool-downs, repetition,
rates, the step budget) and returns a ``Refusal`` naming the limit, or None; ``Limiter.enter``
waits for concurrency slots; ``Limiter.settle`` corrects the token estimate from the usage read
after the call, releases the slots and counts upstream errors (which may open a breaker).
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from dataclasses import dataclass, field

from bastion import semconv
from bastion.proxy.breakers import Steps, Streaks, most_repeated
from bastion.proxy.limits import AgentLimits, LimitSettings
from bastion.proxy.ratelimit import Buckets, Clock, Full, Gate, Gcra, retry_after

RATE_CODE = "rate_limit_exceeded"
CONCURRENCY_CODE = "concurrency_limit_exceeded"
UPSTREAM_BUSY_CODE = "upstream_busy"
CIRCUIT_CODE = "upstream_circuit_open"
STEPS_CODE = "step_budget_exceeded"
REPEAT_CODE = "repeated_tool_call"
STREAK_CODE = "error_streak_cooldown"
ALERT_RUNAWAY = semconv.ALERT_RUNAWAY_AGENT
ALERT_CIRCUIT = semconv.ALERT_UPSTREAM_CIRCUIT_OPEN


@dataclass(frozen=True)
class Attempt:
    """One call about to leave: who, what (the policy object), where, and what it repeats."""

    agent: str
    role: str
    key_id: str
    target: str  # model:<name> | tool:<server>/<name> | http:<host><path>
    upstream: str  # host:port
    conversation: str | None = None
    # The MCP tools/call's identity (tool and arguments), or None.
    tool_call: str | None = None
    # The tool calls a model request's history holds (its format's conversation: ``ApiFormat.conversation``).
    history_calls: tuple[str, ...] = ()
    # Estimated tokens (input + the output asked for); 0 for calls without tokens.
    tokens: int = 0
    # The call starts its conversation (a model request with no model turn in its history, named by
    # its first message): its count starts again, so identical one-shot requests never add up.
    fresh: bool = False


@dataclass(frozen=True)
class Refusal:
    rule: str  # limit:<kind>:<scope>, recorded as the decision's rule
    code: str
    status: int
    message: str
    retry_after: int | None = None
    # A breaker tripped: raise an alert (and with suspend_on_trip, suspend the agent).
    alert: str | None = None
    suspend: bool = False


@dataclass
class Ticket:
    """What an admitted call holds until it is settled."""

    attempt: Attempt
    limits: AgentLimits
    token_buckets: list[Gcra] = field(default_factory=list)
    gates: list[Gate] = field(default_factory=list)


@dataclass(frozen=True)
class Trip:
    """A breaker a finished call opened: recorded as an alert on the call's span."""

    alert: str
    message: str
    agent: str
    suspend: bool


class Limiter:
    def __init__(self, settings: LimitSettings, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.buckets = Buckets(clock=clock)
        self.steps = Steps()
        self.agent_errors = Streaks(clock=clock)
        self.circuits = Streaks(clock=clock)
        self._gates: dict[tuple[str, str], Gate] = {}

    def reload(self, settings: LimitSettings) -> None:
        self.settings = settings

    def check(self, a: Attempt) -> tuple[Ticket | None, Refusal | None]:
        limits = self.settings.for_agent(a.agent, a.role, a.key_id)
        up = self.settings.upstreams
        if (wait := self.circuits.open_for(a.upstream)) > 0:
            text = f"Bastion: the upstream {a.upstream} failed {up.failures} times in a row; calls to it fail fast"
            return None, Refusal("limit:circuit:upstream", CIRCUIT_CODE, 503, f"{text} for now.", retry_after(wait))
        if (wait := self.agent_errors.open_for(a.agent)) > 0:
            text = (
                f"Bastion: agent {a.agent} got {limits.error_streak} upstream errors in a row and is paused "
                f"for {limits.error_cooldown_seconds:g} s."
            )
            return None, Refusal("limit:runaway:errors", STREAK_CODE, 429, text, retry_after(wait))
        if (refused := self._repetition(a, limits)) is not None:
            return None, refused
        if (refused := self._rates(a, limits)) is not None:
            return None, refused
        ticket = Ticket(a, limits)
        if a.tokens:
            ticket.token_buckets = self._token_buckets(a, limits)
        if limits.max_steps is not None and a.conversation is not None:
            if a.fresh:
                self.steps.reset(a.conversation)
            steps = self.steps.step(a.conversation)
            if steps > limits.max_steps:
                text = (
                    f"Bastion stopped this conversation of agent {a.agent}: it reached its step budget of "
                    f"{limits.max_steps} model and tool calls. Do not retry; tell the user the task ran too long."
                )
                return None, Refusal(
                    "limit:runaway:steps", STEPS_CODE, 403, text, alert=ALERT_RUNAWAY, suspend=limits.suspend_on_trip
                )
        return ticket, None

    def _repetition(self, a: Attempt, limits: AgentLimits) -> Refusal | None:
        if limits.max_repeats is None:
            return None
        if a.tool_call is not None and a.conversation is not None:
            name, count = a.tool_call.split("\0", 1)[0], self.steps.repeat(a.conversation, a.tool_call)
        else:
            name, count = most_repeated(list(a.history_calls))
        if count <= limits.max_repeats:
            return None
        text = (
            f"Bastion stopped a loop of agent {a.agent}: the tool {name} was called with the same arguments "
            f"{count} times (at most {limits.max_repeats}). Do not call it again unchanged; "
            "tell the user what is going wrong."
        )
        suspend = limits.suspend_on_trip
        return Refusal("limit:runaway:repeat", REPEAT_CODE, 403, text, alert=ALERT_RUNAWAY, suspend=suspend)

    def _rates(self, a: Attempt, limits: AgentLimits) -> Refusal | None:
        """Every rate that applies, checked before any is taken (a refused call costs nothing)."""
        now = self.clock()
        scopes = [("agent", a.agent, limits.requests_per_second, limits.requests_per_minute, limits.tokens_per_minute)]
        scopes += [
            ("target", t.match, t.requests_per_second, t.requests_per_minute, t.tokens_per_minute)
            for t in self.settings.targets
            if fnmatch.fnmatchcase(a.target, t.match)
        ]
        # (rule kind, scope, name, unit, bucket, cost)
        wanted: list[tuple[str, str, str, str, Gcra, float]] = []
        for scope, name, per_second, per_minute, tokens in scopes:
            for rate, period in ((per_second, 1.0), (per_minute, 60.0)):
                if rate is not None:
                    bucket = self.buckets.bucket((scope, name, "requests", str(period)), rate, period)
                    wanted.append(("rate", scope, name, "requests", bucket, 1))
            if tokens is not None and a.tokens:
                bucket = self.buckets.bucket((scope, name, "tokens", "60.0"), tokens, 60.0)
                wanted.append(("tokens", scope, name, "tokens", bucket, a.tokens))
        for kind, scope, name, unit, bucket, cost in wanted:
            if (wait := bucket.wait(now, cost)) > 0:
                what = f"agent {a.agent}" if scope == "agent" else f"calls to {name}"
                per = "second" if bucket.period == 1.0 else "minute"
                text = (
                    f"Bastion: rate limit of {bucket.rate:g} {unit} per {per} for {what} reached; "
                    f"retry after {retry_after(wait)} s."
                )
                return Refusal(f"limit:{kind}:{scope}", RATE_CODE, 429, text, retry_after(wait))
        for *_, bucket, cost in wanted:
            bucket.take(now, cost)
        return None

    def _token_buckets(self, a: Attempt, limits: AgentLimits) -> list[Gcra]:
        found = []
        if limits.tokens_per_minute is not None:
            found.append(self.buckets.bucket(("agent", a.agent, "tokens", "60.0"), limits.tokens_per_minute, 60.0))
        for t in self.settings.targets:
            if t.tokens_per_minute is not None and fnmatch.fnmatchcase(a.target, t.match):
                found.append(self.buckets.bucket(("target", t.match, "tokens", "60.0"), t.tokens_per_minute, 60.0))
        return found

    async def enter(self, ticket: Ticket) -> Refusal | None:
        """Wait for a slot of the agent and one of the upstream (bounded queues, each with its timeout)."""
        a, limits, up = ticket.attempt, ticket.limits, self.settings.upstreams
        wanted = [
            ("agent", a.agent, limits.concurrency, limits.queue, limits.queue_timeout_seconds),
            ("upstream", a.upstream, up.concurrency, up.queue, up.queue_timeout_seconds),
        ]
        for scope, name, limit, queue, timeout in wanted:
            if limit is None:
                continue
            gate = self._gate(scope, name, limit, queue)
            try:
                await gate.acquire(timeout)
            except Full:
                self.release(ticket)
                if scope == "agent":
                    text = (
                        f"Bastion: agent {a.agent} has {limit} calls in flight (its limit) and its queue "
                        f"of {queue} was full or the wait passed {timeout:g} s."
                    )
                    return Refusal("limit:concurrency:agent", CONCURRENCY_CODE, 429, text, retry_after(1))
                text = f"Bastion: the upstream {name} is at its capacity of {limit} calls in flight; try again shortly."
                return Refusal("limit:concurrency:upstream", UPSTREAM_BUSY_CODE, 503, text, retry_after(1))
            except asyncio.CancelledError:
                self.release(ticket)
                raise
            ticket.gates.append(gate)
        return None

    def _gate(self, scope: str, name: str, limit: int, queue: int) -> Gate:
        key = (scope, name)
        gate = self._gates.get(key)
        if gate is None or gate.limit != limit or gate.queue != queue:
            # A reload changed it: the holders of the old gate release to it; new calls take the new one.
            gate = self._gates[key] = Gate(limit, queue)
        if len(self._gates) > 100_000:
            for k in [k for k, g in self._gates.items() if g.idle and k != key]:
                del self._gates[k]
        return gate

    def release(self, ticket: Ticket) -> None:
        gates, ticket.gates = ticket.gates, []
        for gate in gates:
            gate.release()

    def settle(self, ticket: Ticket, failed: bool, used_tokens: int | None) -> list[Trip]:
        """The call ended: correct the token estimate, release its slots, count an upstream error."""
        self.release(ticket)
        a, limits, up = ticket.attempt, ticket.limits, self.settings.upstreams
        if used_tokens is not None and a.tokens:
            now = self.clock()
            for bucket in ticket.token_buckets:
                bucket.adjust(now, used_tokens - a.tokens)
        trips = []
        if self.agent_errors.record(a.agent, failed, limits.error_streak, limits.error_cooldown_seconds):
            text = (
                f"agent {a.agent} got {limits.error_streak} upstream errors in a row: "
                f"paused for {limits.error_cooldown_seconds:g} s"
            )
            trips.append(Trip(ALERT_RUNAWAY, text, a.agent, limits.suspend_on_trip))
        if self.circuits.record(a.upstream, failed, up.failures, up.cooldown_seconds):
            text = (
                f"upstream {a.upstream} failed {up.failures} times in a row: "
                f"its circuit is open for {up.cooldown_seconds:g} s"
            )
            trips.append(Trip(ALERT_CIRCUIT, text, a.agent, False))
        return trips
