"""The enforcement component: may this process spend for an agent right now?

The client calls it directly on two paths, and both must be cheap:

* :meth:`Budget.check` runs before *every* metered call. With nothing blocked it
  reads one slot and returns.
* :meth:`Budget.account` runs after every priced call. It keeps a running
  per-agent spend counter and compares the spend the gateway has not seen yet
  against the lease (the last ``remaining``, or our gateway's per-process
  ``lease``). If the next call would exceed it, the agent is blocked locally.
  It returns True when the gateway should be asked now (first spend of an agent,
  or half the lease used); the caller wakes the sender.

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

if TYPE_CHECKING:  # imported lazily: this module loads with the first client and must stay cheap
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

    __slots__ = ("_lock", "armed", "_agents", "_intents", "_global", "_spent", "_last", "_leases", "_heard",
                 "_limits", "_limits_source", "_limits_active")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: True when anything is blocked: the only thing :meth:`check` reads when all is well.
        self.armed = False
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

    # ------------------------------------------------------------------ gateway answers

    def snapshot_spent(self) -> dict[str, int]:
        """Spend counters at the moment a batch is taken; the answer's ``remaining`` covers exactly these."""
        with self._lock:
            return dict(self._spent)

    def apply_answer(self, agents: Mapping[str, AgentState], base: Mapping[str, int]) -> None:
        """Turn a heartbeat answer into blocks, unblocks and fresh leases."""
        now = time.time()
        with self._lock:
            self._heard.update(agents)
            for agent, answer in agents.items():
                self._apply_agent_locked(agent, answer, base.get(agent, 0), now)

    def _apply_agent_locked(self, agent: str, answer: AgentState, base: int, now: float) -> None:
        exhausted = [p for p in answer.policies if p.intent_id is None and p.remaining is not None and p.remaining <= 0]
        for p in answer.policies:
            if p.intent_id is not None and p.remaining is not None and p.remaining <= 0:
                self._intents[(agent, p.intent_id)] = Block(GATEWAY, p.name, p.limit, p.spent, p.resets_at)
                self.armed = True
        if answer.state != "active" or exhausted:
            p = exhausted[0] if exhausted else None
            # A paused or killed agent stays blocked until the gateway says otherwise (no resets_at).
            resets_at = p.resets_at if p and answer.state == "active" else None
            state = answer.state if answer.state != "active" else "blocked"
            self._set(agent, Block(GATEWAY, p.name if p else None, p.limit if p else None, p.spent if p else None,
                                   resets_at, state=state))
            return
        self._lift_locked(agent, GATEWAY)
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

    def apply_error(self, err: BlockError, fallback_agent: str | None = None) -> Block | None:
        """A ``budget_exceeded`` 429 (or a 403 kill) blocks the agent it names."""
        agent = err.agent or fallback_agent
        if agent is None:
            return None
        state = "killed" if err.code in ("agent_killed", "killed") else "blocked"
        block = Block(GATEWAY, err.policy, err.limit, err.spent, err.resets_at, state=state, message=err.message or None)
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

    @property
    def limits_active(self) -> bool:
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


def _lease_block(lease: Lease, unsent: int) -> Block:
    policy = lease.policy
    spent = policy.spent + unsent if policy.spent is not None else None
    return Block(LEASE, policy.name, policy.limit, spent, policy.resets_at)


def _leasable(p: PolicyState) -> int:
    """What this process may spend of a policy before the gateway sees it: ``lease`` if sent, else ``remaining``."""
    remaining = p.remaining or 0
    return min(p.lease, remaining) if p.lease is not None else remaining
