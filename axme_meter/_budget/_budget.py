"""The enforcement component: may this process spend for an agent right now?

The client calls it directly on two paths, and both must be cheap:

* :meth:`Budget.admit` runs before *every* metered call. It raises for a blocked
  agent (with nothing blocked it reads one slot) and, against a gateway that
  grants budget, reserves the call's predicted cost from this process's grant
  (``_grants.py``), a local comparison under a short lock. When what is held does
  not cover the call it answers :data:`NEED_GRANT` and the runtime asks the gateway.
* :meth:`Budget.account` runs after every priced call: it settles the
  reservation with the real cost and keeps the per-agent spend counters. Against
  a gateway without grants (AXME Cloud) it compares the spend the gateway has not
  seen yet with the lease (the last ``remaining``, or our gateway's per-process
  ``lease``) and blocks locally when the next call would exceed it. It returns
  True when the gateway should be asked now (first spend of an agent, half a
  lease or grant used); the caller wakes the sender.

Blocks come from separate sources (see ``_blocks``), so one source lifting never lifts another.
Works with no gateway at all: local limits are enforced here too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING

from .._money import to_decimal
from ._blocks import GATEWAY, LEASE, LOCAL, UNREACHABLE, Block
from ._grants import AgentGrants, Grants, Reservation
from ._loops import LoopGuard

if TYPE_CHECKING:  # imported lazily: this module loads with the first client and must stay cheap
    from .._meter import CallRecord, Meter, Pending
    from .._protocol import AgentState, BlockError, PolicyState
    from ._limits import LocalLimits


class Lease:
    """What this process may spend for an agent before the gateway sees it, and our counter when granted."""

    __slots__ = ("remaining", "base", "policy", "woke")

    def __init__(self, remaining: int, base: int, policy: PolicyState) -> None:
        self.remaining = remaining
        self.base = base
        self.policy = policy
        self.woke = False


class Budget:
    """Blocks, leases and local limits of one process. Thread-safe; the hot path takes no lock when idle."""

    __slots__ = ("_lock", "armed", "granting", "grants", "loops", "_agents", "_intents", "_global", "_spent", "_last", "_leases",
                 "_heard", "_limits", "_limits_source", "_limits_active")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: True when anything is blocked: the only thing :meth:`check` reads when all is well.
        self.armed = False
        #: True while this process talks to a gateway that grants budget (set by the runtime).
        self.granting = False
        self.grants = Grants()
        #: Loop detection (``max_identical_requests_per_hour``): inactive until an answer brings a loop policy.
        self.loops = LoopGuard()
        self._agents: dict[str, dict[str, Block]] = {}
        self._intents: dict[tuple[str, str], Block] = {}
        self._global: Block | None = None
        self._spent: dict[str, int] = {}
        #: Cost of each agent's last call: the predictor for "would the next call exceed the lease".
        self._last: dict[str, int] = {}
        self._leases: dict[str, Lease] = {}
        #: Agents the gateway has answered for (or that spent here): any other agent's first spend asks at once.
        self._heard: set[str] = set()
        self._limits: LocalLimits | None = None
        self._limits_source: dict[str, Decimal | str] = {}
        self._limits_active = False

    # ------------------------------------------------------------------ the hot path

    def admit(self, agent: str, intent: str | None) -> Reservation | None | object:
        """Before a call: raise if blocked; else a reservation, ``None`` (nothing to reserve), ``NEED_GRANT``
        or ``COST_UNKNOWN`` (see ``_grants.py``)."""
        if self.armed:
            self._check_blocks(agent, intent)
        if not self.granting:
            return None
        with self._lock:
            return self.grants.reserve(agent, time.monotonic())

    def check(self, agent: str, intent: str | None) -> None:
        """Raise :class:`~axme_meter.BudgetExceeded` if ``agent`` (or ``intent``) may not spend."""
        if self.armed:
            self._check_blocks(agent, intent)

    def _check_blocks(self, agent: str, intent: str | None) -> None:
        now = time.time()
        if self._global is not None:
            raise self._global.error(agent, intent)
        blocks = self._agents.get(agent)
        if blocks:
            for source, block in list(blocks.items()):
                if not block.expired(now):
                    raise block.error(agent, intent)
                with self._lock:
                    self._lift_locked(agent, source)
        if intent is not None and self._intents:
            block = self._intents.get((agent, intent))
            if block is not None:
                if not block.expired(now):
                    raise block.error(agent, intent)
                with self._lock:
                    self._intents.pop((agent, intent), None)
                    self._rearm()

    def record_reserved(self, rec: CallRecord, reservation: Reservation, meter: Meter) -> bool:
        """Record a call that spent from a grant and settle its reservation, as one step.

        One lock around both, taken by :meth:`drain_with_uses` too: a heartbeat then reports grant use
        that matches exactly the spend its entries deliver. True means "the slice runs low: ask for more"."""
        with self._lock:
            meter.record(rec)
            return self.grants.settle(reservation, rec.cost_pico)

    def drain_with_uses(self, meter: Meter) -> tuple[dict[tuple[str, str | None, str], Pending], list[tuple[str, str, int]]]:
        """The meter's pending spend and ``(agent, grant id, used)`` of every held grant, at the same instant."""
        with self._lock:
            uses = [(agent, s.grant_id, s.used) for agent, held in self.grants.agents.items() for s in held.slices.values()]
            return meter.drain(), uses

    def account(self, agent: str, intent: str | None, cost: int, at: float) -> bool:
        """Book one priced call; True means "ask the gateway now".

        Fast path (no lease for this agent, no local limits): two dict writes without
        the lock, because a lock costs several hundred ns here. A lost update in a
        thread race is harmless there: the counter only matters relative to a lease's
        ``base``, and a lease is taken from a snapshot of whatever the counter holds.
        """
        ask = False
        if agent not in self._heard:
            # First spend of an agent the gateway has not told us about: ask now, not after the batching delay.
            self._heard.add(agent)
            ask = True
        if not self._limits_active and agent not in self._leases:
            self._spent[agent] = self._spent.get(agent, 0) + cost
            self._last[agent] = cost
            return ask
        with self._lock:
            spent = self._spent.get(agent, 0) + cost
            self._spent[agent] = spent
            self._last[agent] = cost
            lease = self._leases.get(agent)
            if lease is not None:
                unsent = spent - lease.base
                if unsent + cost > lease.remaining:
                    self._set(agent, _lease_block(lease, unsent))
                    ask = True
                elif not lease.woke and 2 * unsent >= lease.remaining:
                    lease.woke = True
                    ask = True
            if self._limits_active and self._limits is not None:
                for breach in self._limits.account(agent, intent, cost, at):
                    block = Block(LOCAL, breach.policy, breach.limit, breach.spent, breach.resets_at)
                    if breach.intent is not None:
                        self._intents[(agent, breach.intent)] = block
                        self.armed = True
                    else:
                        self._set(agent, block)
        return ask

    def release(self, reservation: Reservation) -> None:
        """The reserved call failed before it could cost anything: give its reservation back."""
        with self._lock:
            self.grants.release(reservation)

    def wait_for_cost(self, agent: str, timeout: float) -> None:
        """``COST_UNKNOWN``: wait until the agent's first call here has a real cost (or ``timeout``)."""
        with self._lock:
            event = self.grants.known_event(agent)
        if event is not None:
            event.wait(timeout)

    # ------------------------------------------------------------------ grants

    def begin_ask(self, agent: str) -> tuple[threading.Event, bool]:
        """One grant request per agent at a time: ``(event, True)`` for the thread that must ask,
        ``(event, False)`` for the others, who wait for the event."""
        with self._lock:
            held = self.grants.agents.get(agent)
            if held is None:
                held = self.grants.agents[agent] = AgentGrants()
            if held.asking:
                return held.ready, False
            held.asking = True
            held.ready = threading.Event()
            return held.ready, True

    def end_ask(self, agent: str, event: threading.Event) -> None:
        with self._lock:
            held = self.grants.agents.get(agent)
            if held is not None:
                held.asking = False
        event.set()

    def apply_grants(self, agent: str, answer: dict[str, object], sent_at: float) -> None:
        """A grant answer: new or topped-up slices (and the agent's state and unpriced-call rule)."""
        with self._lock:
            self._heard.add(agent)
            self.grants.apply(agent, answer, sent_at)
            if "loop" in answer or answer.get("state", "active") == "active":
                from .._protocol import parse_loop

                self.loops.apply(agent, parse_loop(answer.get("loop")), None)
            if not answer.get("grants") and answer.get("state", "active") == "active":
                self._lift_locked(agent, GATEWAY)

    def wants_grant(self) -> list[str]:
        """Agents whose slices ran low: the sender asks for more in the background."""
        with self._lock:
            return [a for a, held in self.grants.agents.items() if held.wanted and not held.asking]

    def grant_request(self, agent: str) -> dict[str, object]:
        """The body fields of a grant request: the predicted call cost and what is held (and used) now."""
        from .._protocol import money

        with self._lock:
            held = self.grants.agents.get(agent)
            if held is None:
                return {}
            out: dict[str, object] = {"held": [{"id": s.grant_id, "used_usd": money(s.used)} for s in held.slices.values()]}
            if held.predicted:
                out["call_cost_usd"] = money(held.predicted)
            return out

    def grants_renewed(self, sent_at: float, grant_ids: set[str]) -> None:
        with self._lock:
            self.grants.renewed(sent_at, grant_ids)

    def unpriced_rule(self, agent: str) -> object | None:
        held = self.grants.agents.get(agent)
        return held.unpriced if held is not None else None

    def forget_grants(self) -> None:
        """Another gateway (or none): grants of the old one mean nothing there."""
        with self._lock:
            self.grants = Grants()

    # ------------------------------------------------------------------ gateway answers

    def snapshot_spent(self) -> dict[str, int]:
        """Spend counters at the moment a batch is taken; the answer's ``remaining`` covers exactly these."""
        with self._lock:
            return dict(self._spent)

    def apply_answer(self, agents: Mapping[str, AgentState], base: Mapping[str, int],
                     loop_mark: dict[tuple[str, str], int] | None = None) -> None:
        """Turn a heartbeat answer into blocks, unblocks, fresh leases and loop policies (``loop_mark``: the
        identical-request counts this process had when the answered batch was taken, see ``_loops``)."""
        now = time.time()
        with self._lock:
            self._heard.update(agents)
            for agent, answer in agents.items():
                self._apply_agent_locked(agent, answer, base.get(agent, 0), now)
        for agent, answer in agents.items():
            self.loops.apply(agent, answer.loop, loop_mark)

    def _apply_agent_locked(self, agent: str, answer: AgentState, base: int, now: float) -> None:
        if self.granting and any(p.is_money and p.intent_id is None for p in answer.policies):
            self.grants.forget_unlimited(agent)  # a money policy appeared: the next call asks for a grant
        exhausted = [p for p in answer.policies if p.intent_id is None and p.remaining is not None and p.remaining <= 0]
        for p in answer.policies:
            if p.intent_id is not None and p.remaining is not None and p.remaining <= 0:
                self._intents[(agent, p.intent_id)] = Block(GATEWAY, p.name, p.limit, p.spent, p.resets_at)
                self.armed = True
        if answer.state != "active" or exhausted:
            p = exhausted[0] if exhausted else None
            loop = answer.loop
            if p is None and loop is not None and loop.breached:
                from .._protocol import LOOP_POLICY, PolicyState

                # Blocked (or paused) for a loop: name the policy; counts travel as plain ints here.
                p = PolicyState(LOOP_POLICY, limit=loop.limit * 10**12, spent=loop.max_count * 10**12, resets_at=loop.resets_at)
            # A paused or killed agent stays blocked until the gateway says otherwise (no resets_at).
            resets_at = p.resets_at if p and answer.state == "active" else None
            state = answer.state if answer.state != "active" else "blocked"
            self._set(agent, Block(GATEWAY, p.name if p else None, p.limit if p else None, p.spent if p else None,
                                   resets_at, state=state))
            return
        self._lift_locked(agent, GATEWAY)
        if self.granting:
            return  # grants bound this process's spend; leases are for gateways without them
        # Only money policies make a lease (an intents-per-day "remaining" is a count, not dollars).
        leased = [p for p in answer.policies if p.intent_id is None and p.remaining is not None and p.is_money
                  and (p.resets_at is None or p.resets_at > now)]
        if not leased:
            self._leases.pop(agent, None)
            self._lift_locked(agent, LEASE)
            return
        tightest = min(leased, key=_leasable)
        lease = self._leases[agent] = Lease(_leasable(tightest), base, tightest)
        unsent = self._spent.get(agent, 0) - lease.base
        if unsent > 0 and unsent * 2 >= lease.remaining:
            lease.woke = True
        # Would the next call (predicted by the last one) still overshoot?  Keep the lease block.
        if unsent + self._last.get(agent, 0) > lease.remaining:
            self._set(agent, _lease_block(lease, unsent))
        else:
            self._lift_locked(agent, LEASE)

    def apply_error(self, err: BlockError, fallback_agent: str | None = None, until: float | None = None) -> Block | None:
        """A ``budget_exceeded`` 429 (or a 403 kill) blocks the agent it names, until ``resets_at``, or until
        ``until`` when given (from ``Retry-After``, relative, so a gateway clock that differs from ours
        cannot lift the block early; a refusal because other processes hold the rest is retried soon)."""
        agent = err.agent or fallback_agent
        if agent is None:
            return None
        state = "killed" if err.code in ("agent_killed", "killed") else "paused" if err.code == "agent_paused" else "blocked"
        resets_at = until if until is not None else err.resets_at
        block = Block(GATEWAY, err.policy, err.limit, err.spent, resets_at, state=state, message=err.message or None)
        with self._lock:
            self._set(agent, block)
        return block

    def set_unreachable(self, reason: str | None) -> None:
        """Fail closed (``reason`` given) or lift the fail-closed block (``None``)."""
        with self._lock:
            self._global = Block(UNREACHABLE, "gateway_unreachable", None, None, None, message=reason) if reason else None
            self._rearm()

    def blocked_by_gateway(self) -> list[str]:
        """Agents the gateway (or the lease) blocked: the sender asks about them each interval."""
        if not self.armed:
            return []
        with self._lock:
            return [a for a, blocks in self._agents.items() if GATEWAY in blocks or LEASE in blocks]

    # ------------------------------------------------------------------ local limits

    def configure_limits(self, limits: Mapping[str, Decimal | str]) -> bool:
        """Replace the local limits (only when they changed: spend so far must survive unrelated
        ``configure()`` calls); returns whether any is active."""
        with self._lock:
            if dict(limits) == self._limits_source:
                return self._limits_active
            from ._limits import LocalLimits

            self._limits_source = dict(limits)
            self._limits = LocalLimits(limits)
            self._limits_active = self._limits.active
            for agent in [a for a, b in self._agents.items() if LOCAL in b]:
                self._lift_locked(agent, LOCAL)
            for key in [k for k, b in self._intents.items() if b.source == LOCAL]:
                del self._intents[key]
            self._rearm()
            return self._limits_active

    # ------------------------------------------------------------------ views

    def blocked_agents(self) -> list[str]:
        with self._lock:
            return sorted(self._agents)

    def local_blocks(self) -> list[tuple[str, Block]]:
        """Agents this process stopped on its own (lease, local limit, fail-closed), for the gateway to show.

        Fail-closed stops every agent: it is reported for the agents this process has spent for."""
        with self._lock:
            out = [(a, b) for a, blocks in self._agents.items() for s, b in blocks.items() if s in (LEASE, LOCAL)]
            if self._global is not None:
                out += [(a, self._global) for a in self._spent if a not in self._agents or GATEWAY not in self._agents[a]]
            return out

    def status(self) -> dict[str, object]:
        """Blocked agents and leases, for ``axme_meter.transport_status()`` and tests."""
        with self._lock:
            return {
                "fail_closed": self._global is not None,
                "blocked": {a: sorted(b) for a, b in self._agents.items()},
                "blocked_intents": [f"{a} {i}" for a, i in self._intents],
                "leases": {a: str(to_decimal(lease.remaining - (self._spent.get(a, 0) - lease.base)))
                           for a, lease in self._leases.items()},
                "grants": {a: {s.policy: str(to_decimal(max(s.free, 0))) for s in held.slices.values()}
                           for a, held in self.grants.agents.items() if held.slices},
                # Agents whose requests are fingerprinted (a loop policy is in force): {agent: {limit, action}}.
                "loop_policies": self.loops.status(),
            }

    # ------------------------------------------------------------------ internals (under _lock)

    def _set(self, agent: str, block: Block) -> None:
        self._agents.setdefault(agent, {})[block.source] = block
        self.armed = True

    def _rearm(self) -> None:
        self.armed = bool(self._agents or self._intents or self._global is not None)

    def _lift_locked(self, agent: str, source: str) -> None:
        blocks = self._agents.get(agent)
        if blocks and blocks.pop(source, None) is not None:
            if source == GATEWAY:
                # A reset (resets_at passed) or an unblock invalidates the old lease, too.
                self._leases.pop(agent, None)
                blocks.pop(LEASE, None)
            if not blocks:
                del self._agents[agent]
        self._rearm()

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self.loops.after_fork_in_child()


def _lease_block(lease: Lease, unsent: int) -> Block:
    policy = lease.policy
    spent = policy.spent + unsent if policy.spent is not None else None
    return Block(LEASE, policy.name, policy.limit, spent, policy.resets_at)


def _leasable(p: PolicyState) -> int:
    """What this process may spend of a policy before the gateway sees it: ``lease`` if sent, else ``remaining``."""
    remaining = p.remaining or 0
    return min(p.lease, remaining) if p.lease is not None else remaining
