"""This process's grants: the slices of an agent's budget the gateway reserved for it alone.

Pure state, no I/O: the runtime asks the gateway (``_transport/_sender.py``) and hands the
answer to :meth:`Grants.apply`. Before a call, :meth:`Grants.reserve` takes the call's
predicted cost out of every policy's slice (so concurrent threads cannot together spend
past it); after the call, :meth:`Grants.settle` replaces the prediction with the real cost.
The only call that can spend past a slice is one whose real cost came in above its
prediction. Heartbeats report each slice's cumulative use, which settles it on the gateway.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


#: How many recent call costs predict the next one (their maximum: cautious, and quick to follow a jump).
RECENT_CALLS = 8
#: Stop using a slice this early: the gateway expires it ``ttl`` after the last heartbeat that renewed it,
#: and a heartbeat sent just now may take a while to arrive.
EXPIRY_MARGIN = 1 / 3


class Slice:
    """One grant (one money policy and window). Money in pico-dollars; ``valid_until`` and ``resets_at``
    are on the monotonic clock (derived from the gateway's relative figures, so clock skew cannot matter)."""

    __slots__ = ("grant_id", "policy", "amount", "used", "reserved", "last_topup", "valid_until", "resets_at", "ttl")

    def __init__(self, grant_id: str, policy: str, amount: int, valid_until: float, resets_at: float | None,
                 ttl: float) -> None:
        self.grant_id = grant_id
        self.policy = policy
        self.amount = amount
        self.used = 0
        self.reserved = 0
        self.last_topup = amount
        self.valid_until = valid_until
        self.resets_at = resets_at
        self.ttl = ttl

    @property
    def free(self) -> int:
        return self.amount - self.used - self.reserved


@dataclass(slots=True)
class UnpricedRule:
    """How to book a call this process cannot price, for an agent with a money policy."""

    action: str  # estimate | refuse
    input_per_1m: int
    output_per_1m: int


@dataclass(slots=True)
class AgentGrants:
    """Everything this process holds for one agent."""

    slices: dict[str, Slice] = field(default_factory=dict)
    #: The gateway has no money policy for this agent: calls need no grant.
    unlimited: bool = False
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_CALLS))
    #: The gateway's idea of a call's cost, until this process has its own history.
    gateway_call_cost: int = 0
    unpriced: UnpricedRule | None = None
    #: Set while a grant request for this agent is in flight; waiters block on ``ready``.
    asking: bool = False
    ready: threading.Event = field(default_factory=threading.Event)
    #: Set when a slice ran below half of its last top-up: the sender asks for more in the background.
    wanted: bool = False
    #: Nothing predicts a call's cost yet (a new agent): one call goes first, the others wait for ``known``.
    probing: bool = False
    known: threading.Event = field(default_factory=threading.Event)

    @property
    def predicted(self) -> int:
        return max(self.recent) if self.recent else self.gateway_call_cost

    @property
    def cost_unknown(self) -> bool:
        return not self.recent and not self.gateway_call_cost


class Reservation:
    """The predicted cost of one call, held in every slice of its agent until the call is booked."""

    __slots__ = ("agent", "amount", "slices", "probe")

    def __init__(self, agent: str, amount: int, slices: list[Slice], probe: bool = False) -> None:
        self.agent = agent
        self.amount = amount
        self.slices = slices
        #: The first call of an agent whose cost nothing predicts: the others wait for its real cost.
        self.probe = probe


#: ``reserve`` could not cover the call from what is held: ask the gateway first.
NEED_GRANT = object()
#: Nothing predicts this agent's call cost yet and one call is finding it out: wait for it, then try again.
COST_UNKNOWN = object()


class Grants:
    """The grant book of one process. Called under the budget's lock (see ``_budget.py``)."""

    __slots__ = ("agents",)

    def __init__(self) -> None:
        self.agents: dict[str, AgentGrants] = {}

    def reserve(self, agent: str, now: float) -> Reservation | None | object:
        """A reservation, ``None`` (no grant needed) or :data:`NEED_GRANT`."""
        held = self.agents.get(agent)
        if held is None:
            return NEED_GRANT
        if held.unlimited:
            return None
        amount = held.predicted
        slices = list(held.slices.values())
        if not slices:
            return NEED_GRANT
        for s in slices:
            if s.valid_until <= now or s.free < amount or (amount == 0 and s.free <= 0):
                return NEED_GRANT
        probe = held.cost_unknown
        if probe:
            # Reserving 0 for every concurrent call would let them all past a slice that holds only a few:
            # one call goes first, and its real cost predicts the others.
            if held.probing:
                return COST_UNKNOWN
            held.probing = True
            held.known.clear()
        for s in slices:
            s.reserved += amount
        return Reservation(agent, amount, slices, probe)

    def known_event(self, agent: str) -> threading.Event | None:
        held = self.agents.get(agent)
        return held.known if held is not None else None

    def settle(self, reservation: Reservation, cost: int) -> bool:
        """Book the real cost; True when a slice ran low and more should be asked for in the background."""
        held = self.agents.get(reservation.agent)
        if held is not None:
            held.recent.append(cost)
            if reservation.probe:
                held.probing = False
                held.known.set()
        low = False
        for s in reservation.slices:
            s.reserved -= reservation.amount
            s.used += cost
            if 2 * s.free < s.last_topup:
                low = True
        if low and held is not None and not held.wanted:
            held.wanted = True
            return True
        return False

    def release(self, reservation: Reservation) -> None:
        """The call never happened (or failed before costing anything)."""
        for s in reservation.slices:
            s.reserved -= reservation.amount
        held = self.agents.get(reservation.agent)
        if reservation.probe and held is not None:
            held.probing = False  # another call finds the cost out
            held.known.set()

    def apply(self, agent: str, answer: dict[str, Any], sent_at: float) -> AgentGrants:
        """Take a 200 answer of ``POST /v1/mesh/grants`` (sent at monotonic ``sent_at``)."""
        from .._protocol import parse_iso, parse_money  # lazily: grants arrive long after import
        held = self.agents.get(agent)
        if held is None:
            held = self.agents[agent] = AgentGrants()
        held.wanted = False
        held.unlimited = bool(answer.get("unlimited")) and not answer.get("grants")
        held.gateway_call_cost = parse_money(answer.get("call_cost_usd")) or 0
        held.unpriced = _unpriced(answer.get("unpriced"))
        wall_offset = time.time() - time.monotonic()
        fresh: dict[str, Slice] = {}
        for raw in answer.get("grants") or []:
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
                continue
            amount = parse_money(raw.get("amount")) or 0
            ttl = float(raw.get("ttl_seconds") or 0)
            resets_in = raw.get("resets_in_seconds")
            valid_until = sent_at + ttl * (1 - EXPIRY_MARGIN)
            resets_mono = sent_at + float(resets_in) if isinstance(resets_in, (int, float)) else None
            if resets_mono is None and parse_iso(raw.get("resets_at")) is not None:
                resets_mono = parse_iso(raw.get("resets_at")) - wall_offset  # type: ignore[operator]
            if resets_mono is not None:
                valid_until = min(valid_until, resets_mono)
            policy = str(raw.get("policy") or "policy")
            old = held.slices.get(policy)
            if old is not None and old.grant_id == raw["id"]:
                old.last_topup = max(amount - old.amount, 1)
                old.amount, old.valid_until, old.ttl = amount, valid_until, ttl
                fresh[policy] = old
            else:
                fresh[policy] = Slice(raw["id"], policy, amount, valid_until, resets_mono, ttl)
        held.slices = fresh
        return held

    def renewed(self, sent_at: float, grant_ids: set[str]) -> None:
        """A heartbeat sent at ``sent_at`` reported these grants and the gateway renewed them."""
        for held in self.agents.values():
            for s in held.slices.values():
                if s.grant_id in grant_ids:
                    until = sent_at + s.ttl * (1 - EXPIRY_MARGIN)
                    if s.resets_at is not None:
                        until = min(until, s.resets_at)
                    s.valid_until = max(s.valid_until, until)

    def forget_unlimited(self, agent: str) -> None:
        """A heartbeat answer showed a money policy for an agent we thought unlimited: ask again."""
        held = self.agents.get(agent)
        if held is not None and held.unlimited:
            del self.agents[agent]


def _unpriced(raw: Any) -> UnpricedRule | None:
    from .._protocol import parse_money

    if not isinstance(raw, dict):
        return None
    return UnpricedRule(str(raw.get("action") or "estimate"), parse_money(raw.get("input_usd_per_1m")) or 0,
                        parse_money(raw.get("output_usd_per_1m")) or 0)
