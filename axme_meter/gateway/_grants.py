"""The grant ledger: a budget that holds at any concurrency, across processes, replicas and restarts.

A client process may spend for an agent only what it has been *granted*: one slice
per money policy and window (``max_cost_per_hour_usd`` / ``_day_`` / ``_month_``).
For every policy and window the ledger keeps

    spent (the window's counter) + outstanding grants <= limit

where a grant's outstanding money is ``amount - settled`` while it is unexpired.
Slices are handed out in one transaction, serialised per agent (PostgreSQL
advisory lock; SQLite has one writer), and the numbers they are computed from are
read in one statement, so the invariant is exact across replicas.

* **Settling.** Heartbeats report each held grant's cumulative use (``used_usd``):
  ``settled = max(settled, used)``, so replays change nothing. The spend itself
  arrives in the same heartbeat's entries and moves from outstanding to spent.
* **Returning.** A ``final`` report (at exit) lowers ``amount`` to what was used:
  the rest is back in the pool at once.
* **Expiry.** A grant lives ``ttl`` seconds (three of the client's heartbeat
  intervals) past the process's last heartbeat; a SIGKILLed process strands its
  unused slice only that long.
* **Slice size.** Half the free money divided among the processes holding grants,
  at most ``MAX_SLICE_CALLS`` calls' worth, never less than the client's predicted
  call cost: as the budget runs out slices shrink to one call, so the last cents
  stay spendable instead of being stranded in other processes' slices.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, text, update
from sqlalchemy.engine import Connection

from .._protocol import iso, money
from . import _agent_quota, _store
from ._db import counters, grants
from ._errors import ApiError
from ._policies import WINDOWED, AgentStatus, PolicyStatus
from ._queries import load_status, parse_policy
from ._schemas import CostPolicy, GrantRequest, GrantUse
from ._windows import bounds

#: A slice is never worth more than this many of the client's predicted calls: it bounds what a crashed
#: process strands until its grant expires, and keeps grant requests to about one per this many calls.
MAX_SLICE_CALLS = 1000
#: Grant lifetime without news from its process, in heartbeat intervals (and its bounds in seconds).
TTL_INTERVALS = 3
MIN_TTL, MAX_TTL, DEFAULT_TTL = 15, 900, 90


@dataclass(slots=True)
class Grant:
    """One slice as the client sees it. Money in pico-dollars."""

    grant_id: str
    policy: PolicyStatus
    amount: int
    settled: int
    ttl: int
    expires_at: int
    now: int

    def to_wire(self) -> dict[str, Any]:
        p = self.policy
        return {"id": self.grant_id, "policy": p.name, "window": p.window, "amount": money(self.amount),
                "ttl_seconds": self.ttl, "expires_at": iso(self.expires_at), "resets_at": iso(p.resets_at),
                # relative, so that a client whose clock differs from the gateway's still agrees on the reset
                "resets_in_seconds": max(0, int(p.resets_at.timestamp()) - self.now) if p.resets_at else None,
                "limit": money(p.limit), "spent": money(p.spent)}


@dataclass(slots=True)
class GrantOutcome:
    """The answer to a grant request: the agent's status, its slices, or the policy that refused."""

    status: AgentStatus
    grants: list[Grant] = field(default_factory=list)
    refusal: PolicyStatus | None = None
    call_cost: int = 0
    policy: CostPolicy | None = None
    #: For a refusal: what was free (neither reported spent nor granted), what running processes hold
    #: (granted and not yet reported spent, the requester's own included), and the part others hold.
    free: int = 0
    reserved: int = 0
    held_elsewhere: int = 0


def ttl_for(interval: float | None) -> int:
    if interval is None:
        return DEFAULT_TTL
    return int(min(MAX_TTL, max(MIN_TTL, TTL_INTERVALS * interval)))


def grant_tx(conn: Connection, org: str, address: str, body: GrantRequest, now: datetime) -> GrantOutcome:
    """The whole grant request in the caller's transaction: settle what is held, then slice what is free."""
    ts = int(now.timestamp())
    aid = _store.address_id(address)
    _agent_quota.ensure_agent(conn, address, ts, "agent")
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(aid[5:20], 16)})
    row = _store.load_agents(conn, [aid])[aid]
    apply_uses(conn, org, body.held, ts, settle=False, instance=body.instance, address_id=aid, strict=True)
    used = {u.id: u.used_usd for u in body.held}
    policy = parse_policy(row["policy"])
    status = load_status(conn, row, now)
    outcome = GrantOutcome(status, policy=policy)
    if status.state != "active":
        return outcome
    money_policies = [p for p in status.policies if p.kind == "usd" and p.window is not None]
    if not money_policies:
        return outcome
    outcome.call_cost = body.call_cost_usd or _recent_call_cost(conn, aid, money_policies)
    ttl = ttl_for(body.heartbeat_interval)
    plans: list[tuple[PolicyStatus, int, Mapping[str, Any] | None]] = []
    for p in money_policies:
        start = int(p.window_start.timestamp()) if p.window_start else 0
        spent, outstanding, holders, mine = _ledger(conn, aid, p, start, body.instance, ts)
        p.spent = spent  # the freshest figure, read together with the grants
        free = p.limit - spent - outstanding
        available = int(mine["amount"]) - max(int(mine["settled"]), used.get(mine["grant_id"], 0)) if mine else 0
        slice_ = _slice(free, holders, outcome.call_cost, available, body.want_usd)
        if slice_ is None and available < max(outcome.call_cost, 1):
            outcome.refusal, outcome.free, outcome.reserved = p, max(free, 0), outstanding
            outcome.held_elsewhere = outstanding - (int(mine["amount"]) - int(mine["settled"]) if mine else 0)
            if not p.breached:
                _record_stop(conn, row, address, body.instance, p, ts)
            return outcome
        plans.append((p, slice_ or 0, mine))
    for p, slice_, mine in plans:
        outcome.grants.append(_issue(conn, org, aid, body.instance, p, slice_, mine, ttl, ts))
    return outcome


def _record_stop(conn: Connection, row: Mapping[str, Any], address: str, instance: str, p: PolicyStatus,
                 ts: int) -> None:
    """Not over the limit, yet no slice fits the next call: the agent is stopped all the same. Show it
    like a client-side stop (``client_block`` on reads, one ``agent.blocked`` event per policy window),
    because the counters alone would still read "active"."""
    from . import _client_blocks
    from ._schemas import ClientBlock

    block = ClientBlock.model_construct(agent=address, source="grant", policy=p.name, limit=p.limit, spent=p.spent,
                                        resets_at=p.resets_at.timestamp() if p.resets_at else None, at=float(ts),
                                        instance=instance)
    _client_blocks.record(conn, {row["address_id"]: row}, [block], (), ts)


def _slice(free: int, holders: int, call_cost: int, available: int, want: int | None) -> int | None:
    """How much to add for this process, or ``None`` when not even one call fits.

    ``available`` is what the process still holds: the last cents of a budget may be split between
    its slice and the pool, and together they must still make one call."""
    floor = max(call_cost - available, 1)
    if free < floor:
        return None
    size = free // (2 * (holders + 1))
    if call_cost:
        size = min(size, MAX_SLICE_CALLS * call_cost)
    if want is not None:
        size = min(size, want)
    return min(max(size, floor), free)


def _ledger(conn: Connection, aid: str, p: PolicyStatus, start: int, instance: str, ts: int
            ) -> tuple[int, int, int, Mapping[str, Any] | None]:
    """Spent, outstanding grants and other holders of one policy window, read in ONE statement.

    One statement sees one snapshot even under READ COMMITTED: a heartbeat that commits
    meanwhile moves money from outstanding to spent atomically for us, never half of it."""
    live = and_(grants.c.address_id == aid, grants.c.policy == p.name, grants.c.window_start == start,
                grants.c.expires_at > ts)
    unsettled = func.coalesce(func.sum(grants.c.amount - grants.c.settled), 0)
    spent_q = select(func.coalesce(_store.summed(counters.c.cost_pico), 0)).where(  # the key's shards
        counters.c.address_id == aid, counters.c.window == p.window, counters.c.start == start,
        counters.c.dim == "total", counters.c.key == "").scalar_subquery()
    outstanding_q = select(unsettled).where(live, grants.c.amount > grants.c.settled).scalar_subquery()
    holders_q = select(func.count(func.distinct(grants.c.instance))).where(
        live, grants.c.amount > grants.c.settled, grants.c.instance != instance).scalar_subquery()
    spent, outstanding, holders = conn.execute(select(spent_q, outstanding_q, holders_q)).one()
    mine = conn.execute(select(grants).where(live, grants.c.instance == instance, grants.c.released.is_(False))
                        .order_by(grants.c.created_at.desc()).limit(1)).mappings().first()
    return int(spent), int(outstanding), int(holders), mine


def _issue(conn: Connection, org: str, aid: str, instance: str, p: PolicyStatus, slice_: int,
           mine: Mapping[str, Any] | None, ttl: int, ts: int) -> Grant:
    """Top up this process's grant for the window, or open one."""
    expires = ts + ttl
    if mine is not None:
        amount = int(mine["amount"]) + slice_
        conn.execute(update(grants).where(grants.c.grant_id == mine["grant_id"])
                     .values(amount=amount, ttl=ttl, expires_at=expires))
        return Grant(mine["grant_id"], p, amount, int(mine["settled"]), ttl, expires, ts)
    grant_id = "gr_" + secrets.token_hex(12)
    start = int(p.window_start.timestamp()) if p.window_start else 0
    conn.execute(grants.insert().values(grant_id=grant_id, org=org, address_id=aid, instance=instance, policy=p.name,
                                        window_start=start, amount=slice_, settled=0, ttl=ttl, created_at=ts,
                                        expires_at=expires, released=False))
    return Grant(grant_id, p, slice_, 0, ttl, expires, ts)


def _recent_call_cost(conn: Connection, aid: str, policies: Sequence[PolicyStatus]) -> int:
    """The agent's mean call cost in the current window, for clients that send no prediction."""
    p = min(policies, key=lambda q: WINDOWED[q.name][0] != "day")
    start = int(p.window_start.timestamp()) if p.window_start else 0
    row = conn.execute(select(_store.summed(counters.c.cost_pico), _store.summed(counters.c.llm_calls)).where(
        counters.c.address_id == aid, counters.c.window == p.window, counters.c.start == start,
        counters.c.dim == "total", counters.c.key == "")).first()  # shards summed (NULLs: no row yet)
    if row is None or not row[1]:
        return 0
    return -(-int(row[0]) // int(row[1]))


def apply_uses(conn: Connection, org: str, uses: Sequence[GrantUse], ts: int, *, settle: bool,
               instance: str | None = None, address_id: str | None = None, strict: bool = False) -> dict[str, str]:
    """Apply a process's report on the grants it holds; returns ``{grant id: outcome}``.

    ``settle`` (heartbeats only): ``settled = max(settled, used)``. Only a heartbeat may settle,
    because only there does the spend itself arrive in the same transaction (its entries); a grant
    request that settled would take money out of "outstanding" before it is in "spent".
    A ``final`` use returns the grant: its amount drops to what was used, the rest is free at once.
    Any other use of a live grant renews its expiry.
    ``strict`` (grant requests): a grant that is unknown, or of another org, agent or process, is a 422
    and the transaction stores nothing. Heartbeats are not strict: spend is never refused because of
    its grant report; the outcome says ``unknown`` for such ids instead.
    """
    outcome: dict[str, str] = {}
    if not uses:
        return outcome
    ids = sorted({u.id for u in uses})
    rows = {r["grant_id"]: r for r in conn.execute(select(grants).where(grants.c.grant_id.in_(ids))).mappings()}
    for i, use in enumerate(uses):
        row = rows.get(use.id)
        if row is None or (org != "*" and row["org"] != org) or (address_id is not None and row["address_id"] != address_id) \
                or (instance is not None and row["instance"] != instance):
            if strict:
                raise ApiError(422, "unknown_grant", f"held.{i}.id: no grant {use.id!r} held by this process for this agent",
                               {"field": f"held.{i}.id"})
            outcome[use.id] = "unknown"
            continue
        settled = max(int(row["settled"]), use.used_usd) if settle else int(row["settled"])
        values: dict[str, Any] = {"settled": settled}
        if row["released"]:
            outcome[use.id] = "returned"
        elif use.final:
            values.update(amount=max(use.used_usd, settled), released=True)
            outcome[use.id] = "returned"
        elif row["expires_at"] > ts:
            values["expires_at"] = ts + int(row["ttl"])
            outcome[use.id] = "held"
        else:
            outcome[use.id] = "expired"
        conn.execute(update(grants).where(grants.c.grant_id == use.id).values(**values))
    return outcome


def unpriced_rule(policy: CostPolicy | None, defaults: tuple[int, int]) -> dict[str, Any] | None:
    """How the client books calls it cannot price for this agent (only agents with a money policy have one)."""
    if policy is None:
        return None
    return {
        "action": policy.on_unpriced_call,
        "input_usd_per_1m": money(policy.unpriced_input_usd_per_1m or defaults[0]),
        "output_usd_per_1m": money(policy.unpriced_output_usd_per_1m or defaults[1]),
    }


__all__ = ["Grant", "GrantOutcome", "apply_uses", "bounds", "grant_tx", "ttl_for", "unpriced_rule"]
