"""Cost-policy evaluation: counters + policy → state, and limit / spent / remaining / resets_at per policy.

Pure functions over values already read from the database, so the same code
answers heartbeats, intents, reads and the dashboard, and is cheap to test.
``blocked`` is never stored: it is derived from the current window's counters,
which is why a block lifts by itself when the window rolls over or when an
admin raises the limit, on every replica at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._protocol import LOOP_POLICY, money
from ._schemas import CostPolicy
from ._windows import bounds, iso

#: policy field → (window, counter field, kind)
WINDOWED: dict[str, tuple[str, str, str]] = {
    "max_cost_per_hour_usd": ("hour", "cost_pico", "usd"),
    "max_cost_per_day_usd": ("day", "cost_pico", "usd"),
    "max_cost_per_month_usd": ("month", "cost_pico", "usd"),
    "max_intents_per_hour": ("hour", "intents", "intents"),
    "max_intents_per_day": ("day", "intents", "intents"),
}


@dataclass(slots=True)
class PolicyStatus:
    """One limit of one agent now. Money in pico-dollars; intent counts as plain ints."""

    name: str
    kind: str  # usd | intents
    limit: int
    spent: int
    window: str | None  # hour | day | month, None for per-intent
    window_start: datetime | None
    resets_at: datetime | None
    intent_id: str | None = None
    #: Added to the policy's own limit by approvals for this window (already included in ``limit``).
    raised: int = 0

    @property
    def remaining(self) -> int:
        return max(self.limit - self.spent, 0)

    @property
    def breached(self) -> bool:
        """Money and intent counts: the limit is reached. Identical requests: the limit is passed
        (``max_identical_requests_per_hour: 10`` allows ten; the eleventh is the loop)."""
        if self.kind == "requests":
            return self.spent > self.limit
        return self.spent >= self.limit

    def fmt(self, value: int) -> str:
        return money(value) if self.kind == "usd" else str(value)

    def to_wire(self, instances: int | None = None) -> dict[str, Any]:
        """Wire form; with ``instances`` (live client processes) adds ``lease`` = this process's share of
        ``remaining``, so N processes leasing at once cannot together overshoot by N × remaining."""
        out: dict[str, Any] = {
            "name": self.name, "limit": self.fmt(self.limit), "spent": self.fmt(self.spent),
            "remaining": self.fmt(self.remaining), "resets_at": iso(self.resets_at),
        }
        if instances is not None:
            out["lease"] = self.fmt(self.remaining // max(instances, 1))
        if self.kind != "usd":
            out["unit"] = self.kind
        if self.window:
            out["window"] = self.window
        if self.intent_id is not None:
            out["intent_id"] = self.intent_id
        return out


@dataclass(slots=True)
class AgentStatus:
    address: str
    address_id: str
    state: str  # active | blocked | paused | killed
    policies: list[PolicyStatus] = field(default_factory=list)
    breach: PolicyStatus | None = None  # the policy that blocks (or first breached one)
    #: Live client instances of this agent; set on heartbeat/intent answers, where it adds ``lease``.
    instances: int | None = None
    #: The loop policy's ``loop`` object for heartbeat and grant answers (``_loops.answer``), when set.
    loop: dict[str, Any] | None = None

    def to_wire(self, *, money_only: bool = False) -> dict[str, Any]:
        # The loop limit travels as ``loop``, not in ``policies``: clients treat a policy with nothing
        # remaining as "the agent may not spend", and a loop stops only the repeated request.
        shown = [p for p in self.policies if p.kind == "usd" or (not money_only and p.kind != "requests")]
        out = {"address_id": self.address_id, "state": self.state, "policies": [p.to_wire(self.instances) for p in shown]}
        if self.loop is not None:
            out["loop"] = self.loop
        return out

    def policy(self, name: str) -> PolicyStatus | None:
        return next((p for p in self.policies if p.name == name), None)


def windows_needed(policy: CostPolicy | None) -> set[str]:
    if policy is None:
        return set()
    return {WINDOWED[name][0] for name in WINDOWED if getattr(policy, name) is not None}


def evaluate(
    address: str,
    aid: str,
    stored_state: str,
    policy: CostPolicy | None,
    totals: dict[str, dict[str, int]],
    now: datetime,
    intent_costs: dict[str, int] | None = None,
    identical: int = 0,
    raises: Mapping[tuple[str, int], int] | None = None,
) -> AgentStatus:
    """The agent's effective state and per-policy status.

    ``totals`` maps window kind → counter fields for the *current* window of that
    kind (in the policy's timezone). Killed and paused come from the stored state;
    blocked means a ``block`` policy's windowed limit is reached (spent >= limit).
    Intent-count limits gate new intents only (see :func:`intent_refusal`). ``identical`` is the
    highest identical-request count of the current hour (``max_identical_requests_per_hour``): passing
    that limit under ``block`` blocks the agent for the rest of the hour, like a money limit. ``raises`` maps
    ``(policy name, window start)`` to what approvals added to that limit (``_approvals.py``).
    """
    status = AgentStatus(address, aid, stored_state)
    if policy is None:
        return status
    tz = policy.timezone
    for name, (window, column, kind) in WINDOWED.items():
        limit = getattr(policy, name)
        if limit is None:
            continue
        start, end = bounds(window, now, tz)
        spent = totals.get(window, {}).get(column, 0)
        raised = (raises or {}).get((name, int(start.timestamp())), 0) if kind == "usd" else 0
        status.policies.append(PolicyStatus(name, kind, int(limit) + raised, int(spent), window, start, end, raised=raised))
    if policy.max_cost_per_intent_usd is not None:
        for intent_id, cost in sorted((intent_costs or {}).items()):
            status.policies.append(
                PolicyStatus("max_cost_per_intent_usd", "usd", int(policy.max_cost_per_intent_usd), cost, None, None, None, intent_id)
            )
    if policy.max_identical_requests_per_hour is not None:
        start, end = bounds("hour", now, tz)
        status.policies.append(PolicyStatus(LOOP_POLICY, "requests", int(policy.max_identical_requests_per_hour),
                                            int(identical), "hour", start, end))
    money_breaches = [p for p in status.policies if p.kind in ("usd", "requests") and p.intent_id is None and p.breached]
    if money_breaches:
        status.breach = max(money_breaches, key=lambda p: p.resets_at or now)
        if stored_state == "active" and policy.action_on_breach == "block":
            status.state = "blocked"
    return status


def intent_refusal(status: AgentStatus, policy: CostPolicy | None, intent_id: str | None) -> PolicyStatus | None:
    """Why a new intent may not start: a breached money limit (block), a full intent count, or
    an intent already over its per-intent budget. ``None`` means it may start."""
    if policy is None or policy.action_on_breach == "notify":
        return None
    if status.breach is not None and policy.action_on_breach == "block":
        return status.breach  # under "pause" the pause itself enforces, so an admin's resume lets work start
    for p in status.policies:
        if p.kind == "intents" and p.breached:
            return p
        if p.intent_id is not None and p.intent_id == intent_id and p.breached:
            return p
    return None


def retry_after(policy: PolicyStatus | None, now: datetime) -> int:
    """Seconds until the blocking window resets (at least 1); a day for open-ended blocks."""
    if policy is None or policy.resets_at is None:
        return 86_400
    return max(1, math.ceil((policy.resets_at - now).total_seconds()))


def block_message(address: str, p: PolicyStatus) -> str:
    if p.kind == "requests":
        return (f"{address} is over {p.name}: it sent one request {p.spent} times this hour (limit {p.limit}), "
                f"a runaway loop?" + (f"; resets {iso(p.resets_at)}" if p.resets_at else ""))
    noun = "$" if p.kind == "usd" else ""
    text = f"{address} is over {p.name}: spent {noun}{p.fmt(p.spent)} of {noun}{p.fmt(p.limit)}"
    if p.intent_id:
        text += f" for intent {p.intent_id}"
    return text + (f"; resets {iso(p.resets_at)}" if p.resets_at else "")
