"""Approval requests: ``action_on_breach: require_approval`` pauses an agent and asks a person for more budget.

Lifecycle (one row in ``axme_approvals`` each, schema 6):

- **opened** in the ingest transaction that pauses the agent on a breach (``_ingest._on_breach``): who,
  which policy and window, spent, the limit in force, and the proposed raise (``approval_raise_usd``,
  default: the policy's own limit). An ``approval.requested`` event; the request goes out after commit
  through the alert channels (Slack message with buttons, email with signed links, webhook).
- **approved**: the raise is added to that policy's limit until the window ends (``active_raises``,
  read by every evaluation: heartbeats, grants, intents), and the agent is resumed, so the client's next
  call goes through. ``approval.approved`` and ``agent.resumed`` events name the approver.
- **denied**: the agent stays paused; an ``approval.denied`` event names who denied it.

A decision is one conditional UPDATE (``WHERE state = 'pending'``): across replicas and channels exactly
one decision wins; every later one is a 409 ``approval_decided`` and changes nothing. A request whose
window has ended cannot be decided (410 ``approval_expired``): its raise would apply to nothing.
When the raised limit is breached again, the agent pauses again and a new request opens.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from .._protocol import iso, money
from . import _store
from ._db import agents, approvals
from ._errors import ApiError, not_found

#: Channels a decision may come from (recorded on the row and in the events).
CHANNELS = ("api", "dashboard", "cli", "slack", "email")
DECISIONS = {"approve": ("approved", "approval.approved"), "deny": ("denied", "approval.denied")}


@dataclass(frozen=True, slots=True)
class Approval:
    """One request as read from the database. Money in pico-dollars, times in epoch seconds."""

    id: str
    org: str
    address_id: str
    address: str
    policy: str
    window: str
    window_start: int
    resets_at: int
    limit: int
    spent: int
    raise_amount: int
    state: str
    created_at: int
    decided_at: int | None
    decided_by: str | None
    channel: str | None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Approval:
        return cls(row["id"], row["org"], row["address_id"], row["address"], row["policy"], row["window"],
                   int(row["window_start"]), int(row["resets_at"]), int(row["limit_pico"]), int(row["spent_pico"]),
                   int(row["raise_pico"]), row["state"], int(row["created_at"]), row["decided_at"], row["decided_by"],
                   row["channel"])

    @property
    def resets(self) -> datetime:
        """``resets_at`` as an aware datetime (for people: the dashboard shows it in the agent's timezone)."""
        return datetime.fromtimestamp(self.resets_at, timezone.utc)

    def shown_state(self, now: int) -> str:
        """``expired`` for a pending request whose window has ended (it can no longer be decided)."""
        return "expired" if self.state == "pending" and now >= self.resets_at else self.state

    def to_wire(self, now: int) -> dict[str, Any]:
        return {"id": self.id, "agent": self.address, "address_id": self.address_id, "policy": self.policy,
                "window": self.window, "window_start": iso(self.window_start), "resets_at": iso(self.resets_at),
                "limit": money(self.limit), "spent": money(self.spent), "raise": money(self.raise_amount),
                "new_limit": money(self.limit + self.raise_amount), "state": self.shown_state(now),
                "created_at": iso(self.created_at), "decided_at": iso(self.decided_at), "decided_by": self.decided_by,
                "channel": self.channel}

    def summary(self) -> str:
        """One line for people: who is over what, and what approving does."""
        return (f"{self.address} is paused: {self.policy} spent ${money(self.spent)} of ${money(self.limit)}. "
                f"Approve to raise the limit by ${money(self.raise_amount)} to ${money(self.limit + self.raise_amount)} "
                f"until {iso(self.resets_at)} and resume the agent.")


def new_id() -> str:
    return "apr_" + secrets.token_hex(12)


def open_request(conn: Connection, row: Mapping[Any, Any], policy_name: str, window: str, window_start: int,
                 resets_at: int, limit: int, spent: int, raise_amount: int, ts: int) -> Approval:
    """Insert a pending request (inside the breach's transaction) and its ``approval.requested`` event."""
    values = {"id": new_id(), "org": row["org"], "address_id": row["address_id"], "address": row["address"],
              "policy": policy_name, "window": window, "window_start": window_start, "resets_at": resets_at,
              "limit_pico": limit, "spent_pico": spent, "raise_pico": raise_amount, "state": "pending", "created_at": ts,
              "decided_at": None, "decided_by": None, "channel": None}
    conn.execute(approvals.insert().values(**values))
    approval = Approval.of(values)
    _store.add_event(conn, row["org"], row["address_id"], "approval.requested",
                     {**_event_data(approval), "by": "policy"}, ts)
    return approval


def _event_data(a: Approval) -> dict[str, Any]:
    return {"agent": a.address, "approval_id": a.id, "policy": a.policy, "window": a.window, "limit": money(a.limit),
            "spent": money(a.spent), "raise": money(a.raise_amount), "resets_at": iso(a.resets_at)}


def active_raises(conn: Connection, ids: Iterable[str], now: int) -> dict[str, dict[tuple[str, int], int]]:
    """What approvals add to each agent's limits now: ``{address_id: {(policy, window start): pico}}``."""
    ids = sorted(set(ids))
    if not ids:
        return {}
    rows = conn.execute(select(approvals.c.address_id, approvals.c.policy, approvals.c.window_start, approvals.c.raise_pico)
                        .where(approvals.c.address_id.in_(ids), approvals.c.state == "approved",
                               approvals.c.resets_at > now))
    out: dict[str, dict[tuple[str, int], int]] = {}
    for aid, policy, start, amount in rows:
        key = (str(policy), int(start))
        per = out.setdefault(str(aid), {})
        per[key] = per.get(key, 0) + int(amount)
    return out


def get(conn: Connection, approval_id: str) -> Approval | None:
    row = conn.execute(select(approvals).where(approvals.c.id == approval_id)).mappings().first()
    return Approval.of(row) if row is not None else None


def visible(conn: Connection, org: str, approval_id: str, agent: str | None = None) -> Approval:
    """The request if ``org`` may see it (and, for a key bound to ``agent``, it is that agent's); else 404."""
    found = get(conn, approval_id) if len(approval_id) <= 40 else None
    if found is None or (org != "*" and found.org != org) or (agent is not None and found.address != agent):
        raise not_found(f"approval {approval_id!r}")
    return found


def list_requests(conn: Connection, org: str, *, state: str | None = None, agent_id: str | None = None,
                  bound_agent: str | None = None, now: int, limit: int = 100) -> list[Approval]:
    """Newest first. ``state`` ``pending`` lists only requests that can still be decided; ``expired`` the others."""
    query = select(approvals)
    if org != "*":
        query = query.where(approvals.c.org == org)
    if agent_id is not None:
        query = query.where(approvals.c.address_id == agent_id)
    if bound_agent is not None:
        query = query.where(approvals.c.address == bound_agent)
    if state in ("pending", "expired"):
        query = query.where(approvals.c.state == "pending")
        query = query.where(approvals.c.resets_at > now if state == "pending" else approvals.c.resets_at <= now)
    elif state is not None:
        query = query.where(approvals.c.state == state)
    rows = conn.execute(query.order_by(approvals.c.created_at.desc(), approvals.c.id.desc()).limit(limit)).mappings()
    return [Approval.of(r) for r in rows]


def decide(conn: Connection, approval: Approval, decision: str, by: str, channel: str, ts: int) -> dict[str, Any]:
    """Approve or deny a visible request, in the caller's transaction; refusals raise ``ApiError`` and change nothing.

    Approving resumes the agent when it is paused (a killed agent stays killed: the raise still applies)."""
    state, event = DECISIONS[decision]
    if approval.state != "pending":
        raise decided_error(approval)
    if ts >= approval.resets_at:
        raise ApiError(410, "approval_expired", f"approval {approval.id} expired at {iso(approval.resets_at)} "
                       f"(its {approval.window} window ended); nothing was changed", {"approval_id": approval.id,
                                                                                      "resets_at": iso(approval.resets_at)})
    won = conn.execute(update(approvals).where(approvals.c.id == approval.id, approvals.c.state == "pending")
                       .values(state=state, decided_at=ts, decided_by=by[:300], channel=channel)).rowcount
    if won != 1:  # another replica or channel decided it meanwhile
        raise decided_error(get(conn, approval.id) or approval)
    data = {**_event_data(approval), "by": by, "channel": channel}
    _store.add_event(conn, approval.org, approval.address_id, event, data, ts)
    agent_state = conn.execute(select(agents.c.state).where(agents.c.address_id == approval.address_id)).scalar()
    if decision == "approve" and agent_state == "paused":
        _store.set_state(conn, approval.address_id, "active")
        _store.add_event(conn, approval.org, approval.address_id, "agent.resumed",
                         {"agent": approval.address, "from": "paused", "by": by, "approval_id": approval.id}, ts)
        agent_state = "active"
    decided = get(conn, approval.id)
    assert decided is not None
    return {"ok": True, "approval": decided.to_wire(ts), "agent_state": agent_state}


def decided_error(approval: Approval) -> ApiError:
    return ApiError(409, "approval_decided", f"approval {approval.id} was already {approval.state} by "
                    f"{approval.decided_by}; nothing was changed",
                    {"approval_id": approval.id, "state": approval.state, "decided_by": approval.decided_by})
