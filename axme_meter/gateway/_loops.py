"""Loop detection on the gateway: identical-request counts per agent × fingerprint × hour, and the org key.

Clients with a ``max_identical_requests_per_hour`` policy fingerprint each request
(a BLAKE2b hash of model + normalised content, keyed with their org's secret) and
report counts in their heartbeat entries (``repeats``), never content. Here those
counts are summed per agent × fingerprint × hour window across every process and
replica (one upsert per row, ``count = count + excluded.count``, so exact), and read
back for the policy evaluation (the hour's highest count) and for the answers (the
fleet's counts, so each process adds what the others did to its own count).

The org key is created once per org (``INSERT … ON CONFLICT DO NOTHING`` then read,
so replicas agree) and cached in memory: it never changes.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from .._protocol import LOOP_POLICY, iso
from . import _store
from ._db import org_secrets, repeats
from ._policies import AgentStatus, PolicyStatus
from ._queries import parse_policy
from ._schemas import CostPolicy

#: Bytes of the per-org fingerprint key (BLAKE2b takes up to 64).
KEY_BYTES = 32
#: At most this many fleet counts in one agent's answer (those of the batch first, then the highest).
MAX_ANSWER_COUNTS = 1000
#: Hour windows kept after they end (for reads); older rows are deleted as new counts arrive.
KEEP_SECONDS = 2 * 3600

_keys: dict[tuple[str, str], str] = {}  # (database URL, org) -> key; keys never change
_keys_lock = threading.Lock()

RepeatKey = tuple[str, int, str]  # address_id, hour window start, fingerprint


def org_key(conn: Connection, org: str, now: int) -> str:
    """The org's fingerprint key (hex), created on first need; identical on every replica."""
    cache_key = (conn.engine.url.render_as_string(hide_password=True), org)  # one process may serve several DBs
    key = _keys.get(cache_key)
    if key is not None:
        return key
    conn.execute(_store._insert(conn, org_secrets).values(org=org, loop_key=secrets.token_hex(KEY_BYTES), created_at=now)
                 .on_conflict_do_nothing(index_elements=["org"]))
    key = conn.execute(select(org_secrets.c.loop_key).where(org_secrets.c.org == org)).scalar_one()
    with _keys_lock:
        _keys[cache_key] = key
    return key


def add(conn: Connection, deltas: Mapping[RepeatKey, int]) -> None:
    """Add identical-request counts (sorted by key: one lock order across replicas) and drop stale hours."""
    if not deltas:
        return
    rows = [{"address_id": aid, "window_start": start, "fingerprint": fp, "count": n}
            for (aid, start, fp), n in sorted(deltas.items())]
    stmt = _store._insert(conn, repeats)
    stmt = stmt.on_conflict_do_update(index_elements=["address_id", "window_start", "fingerprint"],
                                      set_={"count": repeats.c["count"] + stmt.excluded["count"]})
    conn.execute(stmt, rows)
    for aid, start in sorted({(aid, start) for aid, start, _ in deltas}):
        conn.execute(repeats.delete().where(and_(repeats.c.address_id == aid, repeats.c.window_start < start - KEEP_SECONDS)))


def highest(conn: Connection, wanted: Mapping[str, int]) -> dict[str, int]:
    """The highest count of any fingerprint in each agent's given hour window (``{address_id: start}``)."""
    out: dict[str, int] = {}
    for aid, start in wanted.items():
        top = conn.execute(select(func.max(repeats.c["count"])).where(
            and_(repeats.c.address_id == aid, repeats.c.window_start == start))).scalar()
        out[aid] = int(top or 0)
    return out


def fleet_counts(conn: Connection, aid: str, start: int, fingerprints: Iterable[str], limit: int) -> dict[str, int]:
    """The fleet's counts this hour: of ``fingerprints`` (the batch's), plus the hottest ones (at least half
    the limit), at most :data:`MAX_ANSWER_COUNTS` in all."""
    where = and_(repeats.c.address_id == aid, repeats.c.window_start == start)
    wanted = sorted(set(fingerprints))[:MAX_ANSWER_COUNTS]
    out: dict[str, int] = {}
    if wanted:
        rows = conn.execute(select(repeats.c.fingerprint, repeats.c["count"]).where(and_(where, repeats.c.fingerprint.in_(wanted))))
        out.update({fp: int(n) for fp, n in rows})
    room = MAX_ANSWER_COUNTS - len(out)
    if room > 0:
        hot = conn.execute(select(repeats.c.fingerprint, repeats.c["count"]).where(
            and_(where, repeats.c["count"] >= max(2, (limit + 1) // 2))).order_by(repeats.c["count"].desc()).limit(room))
        for fp, n in hot:
            out.setdefault(fp, int(n))
    return out


def answer(key: str, policy: CostPolicy, p: PolicyStatus, counts: Mapping[str, int]) -> dict[str, Any]:
    """An agent's ``loop`` object in heartbeat and grant answers (see docs/protocol.md)."""
    return {"policy": LOOP_POLICY, "limit": p.limit, "action": policy.action_on_breach, "key": key,
            "window": "hour", "window_start": iso(p.window_start), "resets_at": iso(p.resets_at),
            "max": p.spent, "breached": p.breached, "counts": dict(counts)}


def culprit(conn: Connection, aid: str, start: int, count: int,
            loop_intents: Mapping[str, str | None]) -> tuple[str | None, str | None]:
    """The fingerprint with the hour's highest count, and the intent a batch last reported it under."""
    fp = conn.execute(select(repeats.c.fingerprint).where(
        and_(repeats.c.address_id == aid, repeats.c.window_start == start, repeats.c["count"] == count)).limit(1)).scalar()
    return fp, loop_intents.get(fp) if fp else None


def add_answer(conn: Connection, row: Mapping[Any, Any], status: AgentStatus, ts: int,
               fingerprints: Iterable[str] = ()) -> None:
    """Give an agent with a loop policy its ``loop`` object (the org's key, the fleet's counts) in the answer."""
    p = status.policy(LOOP_POLICY)
    policy = parse_policy(row["policy"])
    if p is None or policy is None or p.window_start is None:
        return
    start = int(p.window_start.timestamp())
    counts = fleet_counts(conn, row["address_id"], start, fingerprints, p.limit)
    status.loop = answer(org_key(conn, row["org"], ts), policy, p, counts)
