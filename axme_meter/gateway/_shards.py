"""Which counter shard a write transaction adds an agent's counters to (schema 5).

Why shards: every heartbeat adds to the same few counter rows of its agent (one per window and
dimension). With many client processes reporting for one agent through several replicas, each
transaction waited for the one before it to commit, because an upsert locks the row it adds to
until commit (p99 of seconds). Now a counter key has up to ``SHARDS`` rows, summed on read, and
concurrent transactions for one agent add to different rows.

How a shard is picked (PostgreSQL): per agent, the first shard whose transaction-scoped advisory
lock ``(agent, shard)`` is free is taken with ``pg_try_advisory_xact_lock``, which never waits.
So an agent nobody else is writing right now gets shard 0 (its keys keep one row, and reads stay
cheap), and N concurrent writers of one agent get N distinct shards: none waits for another's row
lock. The locks are only a hint: when every shard is taken (more than ``SHARDS`` writers of one
agent at once), or a transaction touches more agents than it should hold locks for, a random shard
is used and the upsert simply waits for that row, as before. Sums stay exact either way, because
each write is an atomic ``x = x + excluded.x`` on some row of the key and every read sums all rows.

SQLite has one writer at a time: there is nothing to spread, so everything goes to shard 0.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.engine import Connection

#: Rows one counter key may have. 16 covers the agent's concurrent writers of a busy fleet (20 client
#: processes sharing 50 agents through 2 replicas put about 8 transactions on one agent at once).
SHARDS = 16
#: A transaction holds at most this many shard locks (one per agent); PostgreSQL's lock table is shared
#: and finite (``max_locks_per_transaction`` x connections), so a batch over more agents spreads at random.
MAX_LOCKED_AGENTS = 64

# Advisory locks come in two key spaces: one bigint (the migration, intent and grant locks use that) and
# two int4s (only this module), so a shard lock never collides with those.
_CLAIM = text(
    "SELECT k, (SELECT s FROM generate_series(0, :top) AS s WHERE pg_try_advisory_xact_lock(k, s) LIMIT 1) "
    "FROM unnest(CAST(:keys AS integer[])) AS k"
)


def lock_key(aid: str) -> int:
    """The agent's int4 advisory-lock key: 32 bits of its (hex) id, signed."""
    return int(aid[5:13], 16) - 2**31


def choose(conn: Connection, aids: Iterable[str]) -> dict[str, int]:
    """``{address_id: shard}`` for this transaction's counter writes (see the module docstring)."""
    aids = sorted(set(aids))
    if conn.dialect.name != "postgresql" or not aids:
        return dict.fromkeys(aids, 0)
    if len(aids) > MAX_LOCKED_AGENTS:
        return {aid: secrets.randbelow(SHARDS) for aid in aids}
    keys = sorted({lock_key(aid) for aid in aids})
    claimed = {int(k): s for k, s in conn.execute(_CLAIM, {"top": SHARDS - 1, "keys": keys})}
    out = {}
    for aid in aids:
        shard = claimed.get(lock_key(aid))
        out[aid] = int(shard) if shard is not None else secrets.randbelow(SHARDS)
    return out
