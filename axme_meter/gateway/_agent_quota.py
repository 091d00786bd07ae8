"""How fast one org may create new agents: at most N first-seen agents per rolling minute.

Why: any key of an org can create agents just by naming them (heartbeats, intents, grants, policy
``PUT``s), and every agent is a row the fleet listing and the dashboard read on every refresh. One
misbehaving process (an address with a request id in it, say) created thousands in a second. The
limit is ``AXME_GATEWAY_NEW_AGENTS_PER_MINUTE`` (default 600; ``0`` switches it off).

Exact across replicas: the agents created in the last 60 s are counted from ``axme_agents.created_at``
(index ``(org, created_at)``, schema 5) while holding a transaction-scoped PostgreSQL advisory lock per
org (SQLite: its single writer), and the new rows are inserted before that lock is released, at
commit. Only transactions that actually create an agent take the lock: heartbeats of known agents
never wait for it. Agents beyond the limit are not created; the caller refuses what was meant for
them with :func:`error` (429, ``agent_creation_rate_limited``, ``Retry-After``), or, in a heartbeat
batch, only those entries (``_ingest``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from .._protocol import AGENT_CREATION_RATE_LIMITED
from . import _store
from ._db import agents
from ._errors import ApiError

ENV = "AXME_GATEWAY_NEW_AGENTS_PER_MINUTE"
DEFAULT_PER_MINUTE = 600
WINDOW_SECONDS = 60
#: Execution option under which a gateway's limit rides on its engine's connections (set in ``_app.py``);
#: connections without it (the CLI's ``--db`` tools, tests' own engines) use the default.
OPTION = "axme_new_agents_per_minute"


def limit_from(value: str | None) -> int:
    """``AXME_GATEWAY_NEW_AGENTS_PER_MINUTE`` as a number (unset or empty: the default; ``0``: unlimited)."""
    if value is None or not value.strip():
        return DEFAULT_PER_MINUTE
    try:
        limit = int(value.strip())
    except ValueError:
        limit = -1
    if limit < 0:
        raise ValueError(f"{ENV} must be a whole number of new agents per minute and org (0 = unlimited); got {value!r}")
    return limit


@dataclass(frozen=True, slots=True)
class Refused:
    """An agent that was not created because its org reached the limit."""

    address: str
    org: str
    limit: int
    retry_after: int

    def message(self) -> str:
        return (f"org {self.org!r} may create at most {self.limit} new agents per minute ({ENV}); "
                f"{self.address} was not created, retry in {self.retry_after} s")

    def details(self) -> dict[str, object]:
        return {"agent": self.address, "org": self.org, "limit": self.limit, "per_seconds": WINDOW_SECONDS,
                "setting": ENV, "retry_after": self.retry_after}


def error(refused: Refused, field: str | None = None) -> ApiError:
    """The 429 for a request that would have created ``refused``'s agent."""
    details = refused.details()
    if field is not None:
        details["field"] = field
    return ApiError(429, AGENT_CREATION_RATE_LIMITED, refused.message(), details,
                    headers={"Retry-After": str(refused.retry_after)})


def limit_of(conn: Connection) -> int:
    value = conn.get_execution_options().get(OPTION)
    return DEFAULT_PER_MINUTE if value is None else int(value)


def ensure_agents(conn: Connection, addresses: Iterable[str], now: int) -> dict[str, Refused]:
    """Create the agents among ``addresses`` that do not exist yet, within each org's limit.

    Returns the agents that were refused (empty when every one exists or was created). When an org may
    create fewer than it asked for, the earliest named are created."""
    wanted = list(dict.fromkeys(addresses))
    if not wanted:
        return {}
    missing = _missing(conn, wanted)
    if not missing:
        return {}
    limit = limit_of(conn)
    if limit == 0:
        _store.ensure_agents(conn, missing, now)
        return {}
    by_org: dict[str, list[str]] = {}
    for address in missing:
        by_org.setdefault(_store.org_of(address), []).append(address)
    refused: dict[str, Refused] = {}
    for org in sorted(by_org):  # one lock order across replicas
        refused.update(_create_within_limit(conn, org, by_org[org], limit, now))
    return refused


def ensure_agent(conn: Connection, address: str, now: int, field: str | None = None) -> None:
    """:func:`ensure_agents` for one agent; a refusal raises the 429."""
    refused = ensure_agents(conn, [address], now)
    if refused:
        raise error(refused[address], field)


def _missing(conn: Connection, addresses: list[str]) -> list[str]:
    ids = {a: _store.address_id(a) for a in addresses}
    known = set(conn.execute(select(agents.c.address_id).where(agents.c.address_id.in_(sorted(set(ids.values()))))).scalars())
    return [a for a in addresses if ids[a] not in known]


def _create_within_limit(conn: Connection, org: str, addresses: list[str], limit: int, now: int) -> dict[str, Refused]:
    if conn.dialect.name == "postgresql":
        key = int(hashlib.sha256(f"new-agents:{org}".encode()).hexdigest()[:15], 16)
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        addresses = _missing(conn, addresses)  # another replica may have created some while we waited
    since = now - WINDOW_SECONDS
    created, oldest = conn.execute(
        select(func.count(), func.min(agents.c.created_at)).where(agents.c.org == org, agents.c.created_at > since)
    ).one()
    room = max(limit - int(created), 0)
    allowed, over = addresses[:room], addresses[room:]
    _store.ensure_agents(conn, allowed, now)
    if not over:
        return {}
    # the next slot frees when the oldest agent of the window leaves it (created_at > now - 60 no longer holds)
    retry_after = max(1, int(oldest) + WINDOW_SECONDS - now) if oldest is not None else 1
    return {a: Refused(a, org, limit, retry_after) for a in over}
