"""The write side: agents, entry ids, window counters, intents, events, alert claims, keys.

Every function takes an open ``Connection`` inside the caller's transaction, so
one heartbeat request is one transaction however many helpers it uses. Counter
writes are upserts (``x = x + excluded.x``) sorted by primary key: exact under
concurrent replicas on one PostgreSQL, and in one lock order so they cannot deadlock.
Counters are sharded (``_shards.py``): a write adds to one of a key's rows, and every
read here sums them. On PostgreSQL a batch of upserts is ONE statement over arrays
(``INSERT … SELECT FROM unnest(…) ON CONFLICT …``, :func:`_pg_upsert`), not one per row.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import BigInteger, Integer, Numeric, SmallInteger, String, Text, and_, cast, func, select, text, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement, FromClause

from . import _shards
from ._db import agents, alert_claims, api_keys, counters, entries, events, instances, intents, sessions

COUNTER_FIELDS = ("cost_pico", "llm_calls", "tokens_in", "tokens_out", "heartbeats", "intents")


def address_id(address: str) -> str:
    """Opaque, stable id for an address: the same on every replica without coordination."""
    return "addr_" + hashlib.sha256(address.encode()).hexdigest()[:24]


def org_of(address: str) -> str:
    """``agent://acme/prod/x`` → ``acme``."""
    return address.split("://", 1)[1].split("/", 1)[0]


def _insert(conn: Connection, table: Any) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


_PG_ARRAYS = ((SmallInteger, "smallint[]"), (BigInteger, "bigint[]"), (Integer, "integer[]"), (String, "text[]"), (Text, "text[]"))


def _pg_array(column: Any) -> str:
    return next(kind for base, kind in _PG_ARRAYS if isinstance(column.type, base))


def _pg_upsert(conn: Connection, table: Any, rows: Sequence[Mapping[str, Any]] | tuple[Sequence[str], Sequence[Sequence[Any]]],
               conflict: Sequence[str], update_sql: str) -> None:
    """PostgreSQL: ``rows`` (dicts with the same keys, or ``(columns, tuples)``; sorted by ``conflict``) upserted
    in ONE statement.

    The columns travel as arrays (``unnest``), so the SQL text is the same for any number of rows
    (prepared once) and the server runs one statement instead of one per row; ``WITH ORDINALITY …
    ORDER BY`` keeps the caller's order, which is the lock order that keeps concurrent writers free of
    deadlocks. ``update_sql`` is the ``DO UPDATE SET …`` part (``excluded.x`` is the proposed row). The
    rows must not repeat a conflict key (one statement may not update a row twice)."""
    if isinstance(rows, tuple):
        columns, values = list(rows[0]), rows[1]
    else:
        columns = list(rows[0])
        values = [tuple(r[c] for c in columns) for r in rows]
    names = ", ".join(f'"{c}"' for c in columns)
    aliases = ", ".join(f"c{i}" for i in range(len(columns)))
    arrays = ", ".join(f"CAST(:c{i} AS {_pg_array(table.c[c])})" for i, c in enumerate(columns))
    target = ", ".join(f'"{c}"' for c in conflict)
    sql = (f"INSERT INTO {table.name} ({names}) SELECT {aliases} FROM unnest({arrays}) WITH ORDINALITY AS t({aliases}, n) "
           f"ORDER BY n ON CONFLICT ({target}) DO UPDATE SET {update_sql}")
    conn.execute(text(sql), {f"c{i}": list(column) for i, column in enumerate(zip(*values))})


def ensure_agents(conn: Connection, addresses: Iterable[str], now: int) -> None:
    """Create agent rows that do not exist yet (state ``active``, no policy)."""
    rows = [
        {"address_id": address_id(a), "address": a, "org": org_of(a), "state": "active", "created_at": now}
        for a in sorted(set(addresses))
    ]
    if rows:
        # no conflict target: ``address`` is unique as well as ``address_id``, and two replicas inserting the
        # same new agent at once may collide on either index first (a targeted ON CONFLICT raised a 500 then)
        conn.execute(_insert(conn, agents).on_conflict_do_nothing(), rows)


def load_agents(conn: Connection, ids: Iterable[str]) -> dict[str, Mapping[Any, Any]]:
    ids = list(set(ids))
    if not ids:
        return {}
    rows = conn.execute(select(agents).where(agents.c.address_id.in_(ids))).mappings().all()
    return {row["address_id"]: row for row in rows}


def touch_agents(conn: Connection, ids: Iterable[str], now: int) -> None:
    """Record the heartbeat time (monotonic: a replica with a slower clock never moves it back).

    On PostgreSQL an agent row another transaction holds locked is skipped (``SKIP LOCKED``) rather
    than waited for: that is almost always a concurrent heartbeat of the same agent writing the same
    second, and waiting for it would serialise every heartbeat of a shared agent on its row, which the
    counter shards exist to avoid. At worst the time lags by the length of a transaction, until the
    agent's next heartbeat."""
    ids = sorted(set(ids))
    if not ids:
        return
    stale = agents.c.address_id.in_(ids) & ((agents.c.last_heartbeat_at.is_(None)) | (agents.c.last_heartbeat_at < now))
    if conn.dialect.name == "postgresql":
        free = select(agents.c.address_id).where(stale).order_by(agents.c.address_id).with_for_update(skip_locked=True)
        conn.execute(update(agents).where(agents.c.address_id.in_(free.scalar_subquery())).values(last_heartbeat_at=now))
        return
    conn.execute(update(agents).where(stale).values(last_heartbeat_at=now))


def record_entries(conn: Connection, org: str, rows: Sequence[tuple[str, str, str]], now: int) -> set[str]:
    """Insert ``(entry_id, address_id, digest)`` rows; return the ids that were new (the others are replays)."""
    if not rows:
        return set()
    params = [{"org": org, "entry_id": e, "address_id": a, "received_at": now, "digest": d} for e, a, d in rows]
    stmt = _insert(conn, entries).on_conflict_do_nothing(index_elements=["org", "entry_id"]).returning(entries.c.entry_id)
    return set(conn.execute(stmt, params).scalars())


def recorded_entries(conn: Connection, org: str, ids: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """``{entry_id: (address_id, digest)}`` of entries already recorded (digest ``None`` before schema 3)."""
    ids = sorted(set(ids))
    if not ids:
        return {}
    rows = conn.execute(select(entries.c.entry_id, entries.c.address_id, entries.c.digest)
                        .where(entries.c.org == org, entries.c.entry_id.in_(ids)))
    return {r[0]: (r[1], r[2]) for r in rows}


def set_client_block(conn: Connection, aid: str, block: Mapping[str, Any] | None) -> None:
    conn.execute(update(agents).where(agents.c.address_id == aid).values(
        client_block=json.dumps(dict(block)) if block is not None else None))


#: An instance counts towards the lease split while its last heartbeat is this recent (two 30 s intervals).
INSTANCE_WINDOW_SECONDS = 60
#: Instance rows older than this are deleted (processes come and go; the table must not grow forever).
INSTANCE_EXPIRY_SECONDS = 86_400


def instance_of(entry_id: str) -> str:
    """``hb_<instance>_<seq>_<n>`` → ``<instance>``; ``''`` for any other id, so such clients count as one."""
    if not entry_id.startswith("hb_"):
        return ""
    parts = entry_id[3:].rsplit("_", 2)
    return parts[0][:64] if len(parts) == 3 and parts[0] else ""


def note_instances(conn: Connection, seen: Iterable[tuple[str, str]], now: int) -> None:
    """Upsert ``(address_id, instance) → last_seen`` (monotonic, like ``touch_agents``) and drop expired rows.

    Sorted by primary key: one lock order across replicas, as for the counters."""
    rows = [{"address_id": a, "instance": i, "last_seen": now} for a, i in sorted(set(seen))]
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        _pg_upsert(conn, instances, rows, ("address_id", "instance"),
                   "last_seen = excluded.last_seen WHERE axme_instances.last_seen < excluded.last_seen")
    else:
        conn.execute(_sqlite_instances_upsert(), rows)
    conn.execute(
        instances.delete().where(
            instances.c.address_id.in_(sorted({r["address_id"] for r in rows})),
            instances.c.last_seen < now - INSTANCE_EXPIRY_SECONDS,
        )
    )


@functools.cache
def _sqlite_instances_upsert() -> Any:
    stmt = sqlite.insert(instances)
    return stmt.on_conflict_do_update(index_elements=["address_id", "instance"], set_={"last_seen": stmt.excluded.last_seen},
                                      where=instances.c.last_seen < stmt.excluded.last_seen)


def count_instances(conn: Connection, ids: Iterable[str], now: int) -> dict[str, int]:
    """Live client instances per agent (heartbeat within ``INSTANCE_WINDOW_SECONDS``); at least 1 each."""
    ids = sorted(set(ids))
    if not ids:
        return {}
    rows = conn.execute(
        select(instances.c.address_id, func.count())
        .where(instances.c.address_id.in_(ids), instances.c.last_seen >= now - INSTANCE_WINDOW_SECONDS)
        .group_by(instances.c.address_id)
    )
    found = {r[0]: int(r[1]) for r in rows}
    return {aid: max(found.get(aid, 0), 1) for aid in ids}


CounterKey = tuple[str, str, int, str, str]  # address_id, window, start, dim, key
_COUNTER_KEY = ("address_id", "window", "start", "dim", "key", "shard")


def add_counters(conn: Connection, deltas: Mapping[CounterKey, Sequence[int]]) -> None:
    """Add ``deltas`` (values in ``COUNTER_FIELDS`` order) to the counters, creating rows as needed.

    Each agent's rows go to the shard this transaction holds for it (``_shards.choose``); on
    PostgreSQL all rows are one statement, sorted by primary key."""
    if not deltas:
        return
    shards = _shards.choose(conn, (k[0] for k in deltas))
    rows = [(*k, shards[k[0]], *v) for k, v in sorted(deltas.items())]  # in _COUNTER_COLUMNS order
    if conn.dialect.name == "postgresql":
        _pg_upsert(conn, counters, (_COUNTER_COLUMNS, rows), _COUNTER_KEY,
                   ", ".join(f"{f} = axme_counters.{f} + excluded.{f}" for f in COUNTER_FIELDS))
        return
    # SQLite: executemany of one prepared statement, in process, with the driver's own parameter handling
    # (SQLAlchemy's per-row processing of a few hundred rows cost more CPU than SQLite running them)
    conn.exec_driver_sql(_SQLITE_COUNTERS_UPSERT, rows)


_COUNTER_COLUMNS = (*_COUNTER_KEY, *COUNTER_FIELDS)
_SQLITE_COUNTERS_UPSERT = (
    "INSERT INTO axme_counters (" + ", ".join(f'"{c}"' for c in _COUNTER_COLUMNS) + ") "
    "VALUES (" + ", ".join("?" for _ in _COUNTER_COLUMNS) + ") "
    "ON CONFLICT (" + ", ".join(f'"{c}"' for c in _COUNTER_KEY) + ") DO UPDATE SET "
    + ", ".join(f"{f} = axme_counters.{f} + excluded.{f}" for f in COUNTER_FIELDS)
)


def summed(column: Any) -> Any:
    """``SUM(column)`` over a key's shards, as BIGINT on PostgreSQL too (its SUM of bigint is NUMERIC, which
    would turn the integer arithmetic of callers into fractions). A key's total fits in BIGINT: it is
    bounded like one row was before sharding."""
    return cast(func.sum(column), BigInteger)


def read_totals(conn: Connection, aid: str, windows: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """Total counters of one agent for the given ``{window: start}``; missing windows are zeros."""
    return read_totals_many(conn, {aid: windows})[aid]


def read_totals_many(conn: Connection, wanted: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, dict[str, int]]]:
    """``read_totals`` for several agents in one query: ``{aid: {window: start}}`` → ``{aid: {window: fields}}``."""
    keys = [(aid, w, s) for aid, windows in wanted.items() for w, s in windows.items()]
    found: dict[tuple[str, str], dict[str, int]] = {}
    if keys:
        c = counters.c
        # plain IN lists (a superset of the wanted keys, filtered below) are cheaper to build than a tuple IN
        rows = conn.execute(
            select(c.address_id, c.window, c.start, *(summed(c[f]).label(f) for f in COUNTER_FIELDS))
            .where(c.dim == "total", c.key == "", c.address_id.in_(sorted({k[0] for k in keys})),
                   c.window.in_(sorted({k[1] for k in keys})), c.start.in_(sorted({k[2] for k in keys})))
            .group_by(c.address_id, c.window, c.start)
        ).mappings()
        for r in rows:
            if wanted[r["address_id"]].get(r["window"]) == r["start"]:
                found[(r["address_id"], r["window"])] = {f: int(r[f]) for f in COUNTER_FIELDS}
    zero = dict.fromkeys(COUNTER_FIELDS, 0)
    return {aid: {w: found.get((aid, w), dict(zero)) for w in windows} for aid, windows in wanted.items()}


def join_window_totals(
    dialect: str, base: FromClause, aid: ColumnElement[Any], starts: Mapping[str, ColumnElement[Any]],
    fields: Sequence[str] = COUNTER_FIELDS,
) -> tuple[FromClause, dict[str, dict[str, ColumnElement[Any]]]]:
    """``base`` LEFT JOINed with each window's total counter row, for reads over many agents in one statement.

    ``starts[window]`` is the SQL expression for the start of that agent's current window (it depends on
    the agent's timezone). Returns the join and ``{window: {field: column}}`` for ``fields``; a missing row reads
    as NULL (zero). Every join is a primary-key lookup per agent, whatever the size of the counters table:
    SQLite plans plain joins that way; PostgreSQL gets LATERAL subqueries, because with the start as an
    expression its planner may otherwise hash-join whole windows of the table (or, on a freshly loaded
    table without statistics, nested-loop over them: seconds per read). Shards are summed: on PostgreSQL
    the LATERAL is an aggregate over the key's rows (always one row, NULL sums when there are none); SQLite
    has no LATERAL, so each field is a correlated ``SUM`` subquery (a primary-key range of one row there,
    since SQLite only ever writes shard 0). Kept next to ``add_counters`` so that a change to how counters
    are stored changes the one reader that joins them."""
    joined = base
    columns: dict[str, dict[str, ColumnElement[Any]]] = {}
    for window, start in starts.items():
        row = counters.alias(f"totals_{window}")
        match = and_(row.c.address_id == aid, row.c.window == window, row.c.start == start, row.c.dim == "total", row.c.key == "")
        if dialect == "postgresql":
            lateral = select(*(summed(row.c[f]).label(f) for f in fields)).where(match).lateral(f"totals_{window}_row")
            joined = joined.outerjoin(lateral, true())
            columns[window] = {f: lateral.c[f] for f in fields}
        else:
            columns[window] = {f: select(func.sum(row.c[f])).where(match).scalar_subquery() for f in fields}
    return joined, columns


def parsed_policy(dialect: str) -> ColumnElement[Any]:
    """The stored policy (``agents.policy``) parsed once, for :func:`policy_field` (``source=``): JSONB on
    PostgreSQL, where every ``CAST(… AS JSON) ->> …`` would parse the text again; the text on SQLite."""
    return cast(agents.c.policy, postgresql.JSONB) if dialect == "postgresql" else agents.c.policy


def policy_field(dialect: str, name: str, *, number: bool = False, source: ColumnElement[Any] | None = None) -> ColumnElement[Any]:
    """One top-level field of the stored policy JSON as SQL; NULL without a policy.

    ``source`` is a :func:`parsed_policy` column (default: ``agents.policy``, parsed here). With ``number``
    the value compares as a number (limits are pico-dollar ints, up to 1e21: NUMERIC on PostgreSQL;
    SQLite's ``json_extract`` returns an INTEGER, or a REAL beyond 64 bits)."""
    if dialect == "postgresql":
        parsed = source if source is not None else cast(agents.c.policy, postgresql.JSON)
        text_value = parsed[name].astext
        return cast(text_value, Numeric) if number else text_value
    return func.json_extract(source if source is not None else agents.c.policy, f"$.{name}")


def register_intent(conn: Connection, org: str, intent_id: str, aid: str, labels: Mapping[str, str] | None, now: int) -> bool:
    """Create the intent if new; True when this call created it (so it counts towards intent limits)."""
    stmt = _insert(conn, intents).values(
        org=org, intent_id=intent_id, address_id=aid, created_at=now, last_seen_at=now,
        labels=json.dumps(dict(labels or {})), cost_pico=0, llm_calls=0, tokens_in=0, tokens_out=0,
    ).on_conflict_do_nothing(index_elements=["org", "intent_id"])
    return bool(conn.execute(stmt.returning(intents.c.intent_id)).first())


def book_intents(conn: Connection, deltas: Mapping[tuple[str, str, str], Sequence[int]], now: int) -> set[tuple[str, str]]:
    """Create missing intents and add ``(cost, calls, tokens_in, tokens_out)`` to each, in two statements.

    ``deltas`` is keyed by ``(org, intent_id, address_id)``; returns the ``(org, intent_id)`` pairs created
    here (they count towards intent limits)."""
    if not deltas:
        return set()
    base = {"created_at": now, "last_seen_at": now, "labels": "{}", "cost_pico": 0, "llm_calls": 0, "tokens_in": 0, "tokens_out": 0}
    merged: dict[tuple[str, str], tuple[str, list[int]]] = {}  # one row per key: a multi-row upsert may not hit a row twice
    for (o, i, a), v in deltas.items():
        _, total = merged.setdefault((o, i), (a, [0, 0, 0, 0]))
        for n, x in enumerate(v):
            total[n] += x
    ordered = sorted(((o, i, a), v) for (o, i), (a, v) in merged.items())
    new = [{"org": o, "intent_id": i, "address_id": a, **base} for (o, i, a), _ in ordered]
    stmt = _insert(conn, intents).on_conflict_do_nothing(index_elements=["org", "intent_id"])
    created = {tuple(r) for r in conn.execute(stmt.returning(intents.c.org, intents.c.intent_id), new)}
    adds = [{"org": o, "intent_id": i, "address_id": a, **base, "cost_pico": v[0], "llm_calls": v[1], "tokens_in": v[2],
             "tokens_out": v[3]} for (o, i, a), v in ordered]
    amounts = ("cost_pico", "llm_calls", "tokens_in", "tokens_out")
    if conn.dialect.name == "postgresql":
        _pg_upsert(conn, intents, adds, ("org", "intent_id"),
                   ", ".join([*(f"{f} = axme_intents.{f} + excluded.{f}" for f in amounts), "last_seen_at = excluded.last_seen_at"]))
    else:
        conn.execute(_sqlite_intents_upsert(), adds)
    return created  # type: ignore[return-value]


@functools.cache
def _sqlite_intents_upsert() -> Any:
    up = sqlite.insert(intents)
    amounts = ("cost_pico", "llm_calls", "tokens_in", "tokens_out")
    return up.on_conflict_do_update(index_elements=["org", "intent_id"],
                                    set_={**{f: intents.c[f] + up.excluded[f] for f in amounts}, "last_seen_at": up.excluded.last_seen_at})


def intent_costs(conn: Connection, org: str, ids: Iterable[str]) -> dict[str, int]:
    ids = list(set(ids))
    if not ids:
        return {}
    rows = conn.execute(
        select(intents.c.intent_id, intents.c.cost_pico).where(intents.c.org == org, intents.c.intent_id.in_(ids))
    )
    return {r[0]: int(r[1]) for r in rows}


def add_event(conn: Connection, org: str, aid: str | None, type_: str, data: Mapping[Any, Any], now: int) -> None:
    conn.execute(events.insert().values(org=org, address_id=aid, type=type_, created_at=now, data=json.dumps(dict(data))))


Claim = tuple[str, str, int, str]  # address_id, policy, window start, threshold
#: Execution option under which a gateway's :class:`AlertClaims` rides on its engine's connections.
CLAIMS_OPTION = "axme_alert_claims"


class AlertClaims:
    """The alert claims one gateway has seen taken, so it skips their INSERT next time.

    Claims are never deleted, so a remembered one cannot go stale; the set belongs to one
    ``Gateway`` (one database), never to the process: two gateways in one process (in-process
    tests) must each claim in their own database. The ``Gateway`` puts it on its engine's
    connections (execution option ``CLAIMS_OPTION``), which is where :func:`claim_alert` and
    :func:`remember_claims` find it unless it is passed to them."""

    LIMIT = 200_000

    def __init__(self) -> None:
        self._taken: set[Claim] = set()
        self._lock = threading.Lock()

    def __contains__(self, claim: object) -> bool:
        return claim in self._taken

    def __len__(self) -> int:
        return len(self._taken)

    def add_all(self, claims: Iterable[Claim]) -> None:
        with self._lock:
            if len(self._taken) > self.LIMIT:
                self._taken.clear()
            self._taken.update(claims)


def _claims_of(conn: Connection, taken: AlertClaims | None) -> AlertClaims | None:
    if taken is not None:
        return taken
    found = conn.get_execution_options().get(CLAIMS_OPTION)
    return found if isinstance(found, AlertClaims) else None


def claim_alert(conn: Connection, aid: str, policy: str, window_start: int, threshold: str, now: int,
                taken: AlertClaims | None = None) -> bool:
    """True for exactly one caller across all replicas: the one whose row went in.

    Claims the gateway knows to be taken (``taken``, else its connection's :class:`AlertClaims`) are
    skipped without a statement; without either every claim is tried (correct, one INSERT more). A claim
    inserted by a transaction that later rolls back is only remembered after the caller commits, see
    :func:`remember_claims`."""
    known = _claims_of(conn, taken)
    if known is not None and (aid, policy, window_start, threshold) in known:
        return False
    stmt = _insert(conn, alert_claims).values(
        address_id=aid, policy=policy, window_start=window_start, threshold=threshold, claimed_at=now
    ).on_conflict_do_nothing(index_elements=["address_id", "policy", "window_start", "threshold"])
    won = bool(conn.execute(stmt.returning(alert_claims.c.address_id)).first())
    conn.info.setdefault("axme_claims", []).append((aid, policy, window_start, threshold))
    return won


def remember_claims(conn: Connection, taken: AlertClaims | None = None) -> None:
    """After commit: every claim tried in this transaction is now taken (by us or another replica)."""
    claims = conn.info.pop("axme_claims", [])
    known = _claims_of(conn, taken)
    if known is not None:
        known.add_all(claims)


def set_state(conn: Connection, aid: str, state: str) -> str | None:
    """Set the stored state; returns the previous one (None if the agent does not exist)."""
    row = conn.execute(select(agents.c.state).where(agents.c.address_id == aid)).first()
    if row is None:
        return None
    conn.execute(update(agents).where(agents.c.address_id == aid).values(state=state))
    return str(row[0])


def set_policy(conn: Connection, aid: str, policy: Mapping[Any, Any] | None, now: int) -> None:
    """Save (or delete) the cost policy; a client-reported block was about the old one, so it is cleared."""
    conn.execute(
        update(agents).where(agents.c.address_id == aid).values(
            policy=json.dumps(dict(policy)) if policy is not None else None, policy_updated_at=now, client_block=None
        )
    )


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    """How a key is named in ``keys list``, ``DELETE /v1/keys/{prefix}`` and audit events' ``"by"``.

    A minted key (``axme_sa_`` + 43 random characters) shows its first 16 characters; a key chosen
    by hand (``AXME_GATEWAY_ADMIN_KEY`` may be short) is named by its digest instead, so listing
    keys never reveals most of a short key."""
    if key.startswith("axme_sa_") and len(key) >= 40:
        return key[:16]
    return "key_" + hash_key(key)[:12]


def insert_key(conn: Connection, key: str, org: str, *, admin: bool, agent: str | None, now: int) -> bool:
    """Store a key's hash; False when it already existed (e.g. the same AXME_GATEWAY_ADMIN_KEY on restart)."""
    stmt = _insert(conn, api_keys).values(
        key_hash=hash_key(key), prefix=key_prefix(key), org=org, is_admin=admin, agent=agent, created_at=now
    ).on_conflict_do_nothing(index_elements=["key_hash"])
    if conn.execute(stmt.returning(api_keys.c.key_hash)).first():
        return True
    # keys stored before key_prefix() existed were named by their first 12 characters
    conn.execute(update(api_keys).where(api_keys.c.key_hash == hash_key(key)).values(prefix=key_prefix(key)))
    return False


def find_key(conn: Connection, key: str) -> Mapping[Any, Any] | None:
    return conn.execute(select(api_keys).where(api_keys.c.key_hash == hash_key(key))).mappings().first()


def list_keys(conn: Connection, org: str, agent: str | None = None) -> list[Mapping[Any, Any]]:
    """Keys of ``org`` (``*``: every key), only those bound to ``agent`` when given; oldest first."""
    query = select(api_keys)
    if org != "*":
        query = query.where(api_keys.c.org == org)
    if agent is not None:
        query = query.where(api_keys.c.agent == agent)
    return list(conn.execute(query.order_by(api_keys.c.created_at, api_keys.c.prefix)).mappings().all())


def keys_by_prefix(conn: Connection, prefix: str) -> list[Mapping[Any, Any]]:
    return list(conn.execute(select(api_keys).where(api_keys.c.prefix == prefix)).mappings().all())


def delete_key(conn: Connection, key_hash: str) -> bool:
    """Revoke: the row goes (every replica's next lookup misses it), and with it the key's dashboard sessions."""
    conn.execute(sessions.delete().where(sessions.c.key_hash == key_hash))
    return bool(conn.execute(api_keys.delete().where(api_keys.c.key_hash == key_hash)).rowcount)


def has_admin_key(conn: Connection) -> bool:
    return conn.execute(select(api_keys.c.key_hash).where(and_(api_keys.c.is_admin, api_keys.c.org == "*")).limit(1)).first() is not None
