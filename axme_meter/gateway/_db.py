"""Engine and schema: tables (SQLAlchemy Core), SQLite/PostgreSQL setup, automatic migration.

Money columns are BIGINT pico-dollars: exact on both backends (SQLite has no exact
NUMERIC) and summed with plain integer arithmetic in ``ON CONFLICT DO UPDATE``.
Schema creation runs under ``pg_advisory_xact_lock`` on PostgreSQL and inside a
``BEGIN IMMEDIATE`` on SQLite, so two replicas starting together never race, and a
``schema_version`` row records what was applied.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.engine import Connection

SCHEMA_VERSION = 7
#: Arbitrary constant naming this app's advisory lock on PostgreSQL.
_MIGRATION_LOCK = 0x41584D45  # "AXME"

metadata = MetaData()

schema_version = Table("axme_schema_version", metadata, Column("version", Integer, primary_key=True))

api_keys = Table(
    "axme_api_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("prefix", String(16), nullable=False),
    Column("org", String(128), nullable=False),
    Column("is_admin", Boolean, nullable=False),
    Column("agent", String(400)),
    Column("created_at", BigInteger, nullable=False),
)

agents = Table(
    "axme_agents",
    metadata,
    Column("address_id", String(40), primary_key=True),
    Column("address", String(400), nullable=False, unique=True),
    Column("org", String(128), nullable=False, index=True),
    # active | paused | killed (blocked is derived from policies, never stored)
    Column("state", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("last_heartbeat_at", BigInteger),
    Column("policy", Text),  # CostPolicy JSON, money in pico-dollars
    Column("policy_updated_at", BigInteger),
    # The last block a client process reported for this agent (JSON, see _client_blocks.py; schema 3)
    Column("client_block", Text),
    # new agents per org in the last minute (the creation rate limit, _agent_quota.py; schema 5)
    Index("ix_axme_agents_org_created", "org", "created_at"),
)

entries = Table(
    "axme_entries",
    metadata,
    Column("org", String(128), primary_key=True),
    Column("entry_id", String(200), primary_key=True),
    Column("address_id", String(40), nullable=False),
    Column("received_at", BigInteger, nullable=False),
    # sha256 of the entry's agent, intent and metrics: a replay with other content is a conflict (schema 3;
    # NULL for entries recorded before, which are compared by agent only)
    Column("digest", String(64)),
)

#: Window counters, sharded (schema 5): one key (agent, window, start, dim, key) may have up to
#: ``_shards.SHARDS`` rows, one per ``shard``, and its value is their SUM. Concurrent writers for one
#: agent each add to a shard of their own (``_shards.py``), so they never wait on one row's lock;
#: every read sums over the shards. A key nobody wrote concurrently has just shard 0.
counters = Table(
    "axme_counters",
    metadata,
    Column("address_id", String(40), primary_key=True),
    Column("window", String(8), primary_key=True),  # hour | day | week | month
    Column("start", BigInteger, primary_key=True),  # epoch seconds, window start in the agent's timezone
    Column("dim", String(8), primary_key=True),  # total | intent | model
    Column("key", String(200), primary_key=True),  # '' for total
    Column("shard", SmallInteger, primary_key=True, server_default=text("0")),  # schema 5
    Column("cost_pico", BigInteger, nullable=False),
    Column("llm_calls", BigInteger, nullable=False),
    Column("tokens_in", BigInteger, nullable=False),
    Column("tokens_out", BigInteger, nullable=False),
    Column("heartbeats", BigInteger, nullable=False),
    Column("intents", BigInteger, nullable=False),
)

intents = Table(
    "axme_intents",
    metadata,
    Column("org", String(128), primary_key=True),
    Column("intent_id", String(200), primary_key=True),
    Column("address_id", String(40), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("labels", Text),
    Column("cost_pico", BigInteger, nullable=False),
    Column("llm_calls", BigInteger, nullable=False),
    Column("tokens_in", BigInteger, nullable=False),
    Column("tokens_out", BigInteger, nullable=False),
)

events = Table(
    "axme_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("org", String(128), nullable=False),
    Column("address_id", String(40)),
    Column("type", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_axme_events_org_id", "org", "id"),
)

#: One row per (agent, policy, window, threshold): inserting it claims the right to send that alert.
alert_claims = Table(
    "axme_alert_claims",
    metadata,
    Column("address_id", String(40), primary_key=True),
    Column("policy", String(64), primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    Column("threshold", String(16), primary_key=True),
    Column("claimed_at", BigInteger, nullable=False),
)


#: Client instances (the ``<instance>`` of ``hb_<instance>_<seq>_<n>`` entry ids) per agent and when each
#: last sent a heartbeat: the gateway divides ``remaining`` by how many are live so that N processes
#: sharing one agent each lease 1/N of it instead of all of it (schema version 2).
instances = Table(
    "axme_instances",
    metadata,
    Column("address_id", String(40), primary_key=True),
    Column("instance", String(64), primary_key=True),  # '' for entries without the hb_<instance>_… id form
    Column("last_seen", BigInteger, nullable=False),
    Index("ix_axme_instances_seen", "address_id", "last_seen"),
)


#: Budget grants (see ``_grants.py``): slices of a money policy's window reserved for one client process.
#: ``amount`` is what the process may spend; ``settled`` how much of it heartbeats have reported spent.
#: Outstanding money (``amount - settled``, while unexpired) counts against the policy's limit, so that
#: for every policy and window: spent + outstanding <= limit.
grants = Table(
    "axme_grants",
    metadata,
    Column("grant_id", String(40), primary_key=True),
    Column("org", String(128), nullable=False),
    Column("address_id", String(40), nullable=False),
    Column("instance", String(64), nullable=False),
    Column("policy", String(64), nullable=False),
    Column("window_start", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("settled", BigInteger, nullable=False),
    Column("ttl", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("released", Boolean, nullable=False),
    Index("ix_axme_grants_window", "address_id", "policy", "window_start", "expires_at"),
    Index("ix_axme_grants_instance", "address_id", "instance"),
)


#: Dashboard sessions, server-side (schema version 3): the cookie carries a random id whose sha256 is the
#: key here, so logging out (row deleted) or revoking the key (rows deleted, key gone) ends a session on
#: every replica at once, however long the cookie itself would still be valid.
sessions = Table(
    "axme_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("key_hash", String(64), nullable=False, index=True),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)


#: Price files loaded on the gateway (schema version 4, see ``_prices.py``): the effective price table is
#: the bundled one with these over it, in ``seq`` order (a later file replaces earlier entries by model id).
#: Kept in the database, so every replica serves, and re-prices with, the same table.
price_files = Table(
    "axme_price_files",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("content", Text, nullable=False),  # the file's TOML text, exactly as loaded
    Column("sha256", String(64), nullable=False),
    Column("loaded_at", BigInteger, nullable=False),
    Column("loaded_by", String(64), nullable=False),
)


#: Approval requests (schema version 6, see ``_approvals.py``): opened when a ``require_approval`` policy
#: pauses an agent; approving adds ``raise_pico`` to that policy's limit until ``resets_at`` (the window's end).
approvals = Table(
    "axme_approvals",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org", String(128), nullable=False),
    Column("address_id", String(40), nullable=False),
    Column("address", String(400), nullable=False),
    Column("policy", String(64), nullable=False),
    Column("window", String(8), nullable=False),
    Column("window_start", BigInteger, nullable=False),
    Column("resets_at", BigInteger, nullable=False),
    Column("limit_pico", BigInteger, nullable=False),  # the limit in force when it was opened (raises included)
    Column("spent_pico", BigInteger, nullable=False),
    Column("raise_pico", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),  # pending | approved | denied
    Column("created_at", BigInteger, nullable=False),
    Column("decided_at", BigInteger),
    Column("decided_by", String(300)),
    Column("channel", String(16)),  # api | dashboard | cli | slack | email
    Index("ix_axme_approvals_org_state", "org", "state"),
    Index("ix_axme_approvals_agent", "address_id", "state", "resets_at"),
)

#: Gateway-wide secrets shared by every replica through the database (schema version 6): the key that
#: signs approval links and Slack button values, created at the first start unless configured.
gateway_secrets = Table(
    "axme_gateway_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

#: Per-org secrets (schema version 7): ``loop_key`` keys the BLAKE2b fingerprints clients compute for loop
#: detection (``max_identical_requests_per_hour``). Handed out in heartbeat and grant answers to the org's
#: keys only, so every process of an org fingerprints alike and nobody outside it can test guesses.
org_secrets = Table(
    "axme_org_secrets",
    metadata,
    Column("org", String(128), primary_key=True),
    Column("loop_key", String(128), nullable=False),  # hex
    Column("created_at", BigInteger, nullable=False),
)

#: Identical requests per agent × fingerprint × hour window (schema version 7), summed over every client
#: process and replica (``count = count + excluded.count``). Counts only: a fingerprint is a keyed hash.
repeats = Table(
    "axme_repeats",
    metadata,
    Column("address_id", String(40), primary_key=True),
    Column("window_start", BigInteger, primary_key=True),  # the hour window's start in the policy's timezone
    Column("fingerprint", String(16), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Index("ix_axme_repeats_count", "address_id", "window_start", "count"),
)


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here; ``sqlite:///path`` and ``postgresql+psycopg://`` pass through."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, *, pool_size: int = 8) -> Engine:
    """An engine with per-backend settings (SQLite: WAL, busy timeout, IMMEDIATE write transactions)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        # A pool keeps connections (and their page cache) open: closing the last one checkpoints the WAL.
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=pool_size,
                               max_overflow=pool_size)
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    """pysqlite's own transaction handling defers the write lock, which turns concurrent writers into
    "database is locked" errors the busy timeout cannot retry; take control and BEGIN IMMEDIATE for writes."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("axme_write") else "BEGIN")


def write_conn(engine: Engine) -> Connection:
    """A connection whose transactions take the write lock up front (SQLite) — use for every write."""
    return engine.connect().execution_options(axme_write=True)


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema; safe when several replicas start at once."""
    with write_conn(engine) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        metadata.create_all(conn, checkfirst=True)
        current = conn.execute(select(schema_version.c.version)).scalar()
        if current is None:
            conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        elif current < SCHEMA_VERSION:  # future migrations go here, one step per version
            # 1 → 2: adds axme_instances; 2 → 3: adds axme_grants and axme_sessions (create_all above made them;
            # sessions from older versions lived in cookies and end), and two nullable columns:
            if current < 3:
                _add_columns_v3(conn)
            # 3 → 4: adds axme_price_files (create_all above made it; no loaded files: the bundled table, as before)
            # 4 → 5: sharded counters (existing rows become shard 0) and the (org, created_at) index of agents
            if current < 5:
                _shard_counters_v5(conn)
            if current < 6:
                pass  # 5 → 6: adds axme_approvals and axme_gateway_secrets (create_all above made them)
            # 6 → 7: adds axme_org_secrets and axme_repeats (create_all above made them; both start empty)
            conn.execute(schema_version.update().values(version=SCHEMA_VERSION))


def _add_columns_v3(conn: Connection) -> None:
    """2 → 3: ``axme_entries.digest`` and ``axme_agents.client_block`` (both nullable: old rows stay valid)."""
    from sqlalchemy import inspect

    inspector = inspect(conn)
    for table, column, kind in (("axme_entries", "digest", "VARCHAR(64)"), ("axme_agents", "client_block", "TEXT")):
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))


def _shard_counters_v5(conn: Connection) -> None:
    """4 → 5: ``axme_counters`` gets a ``shard`` column in its primary key; every existing row becomes shard 0
    (each key had one row, so every total stays exactly what it was), and ``axme_agents`` an index on
    ``(org, created_at)`` for the new-agent rate limit.

    Runs under ``migrate``'s lock (PostgreSQL advisory lock; SQLite's write lock), and the version row is
    updated in the same transaction, so of several replicas starting at once exactly one does this."""
    from sqlalchemy import inspect

    if "shard" in {c["name"] for c in inspect(conn).get_columns("axme_counters")}:
        return  # already sharded (a database created by schema 5 code and then marked older by hand)
    if conn.dialect.name == "postgresql":
        # in place: a constant default is a catalog change (no rewrite); the key's index is rebuilt once
        pkey = conn.execute(text("SELECT conname FROM pg_constraint WHERE conrelid = 'axme_counters'::regclass "
                                 "AND contype = 'p'")).scalar_one()
        conn.execute(text("ALTER TABLE axme_counters ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0"))
        conn.execute(text(f'ALTER TABLE axme_counters DROP CONSTRAINT "{pkey}", '
                          'ADD PRIMARY KEY (address_id, "window", start, dim, key, shard)'))
    else:
        # SQLite cannot change a primary key: copy into the new table, then swap the names
        conn.execute(text("ALTER TABLE axme_counters RENAME TO axme_counters_v4"))
        counters.create(conn)
        fields = 'address_id, "window", start, dim, key, cost_pico, llm_calls, tokens_in, tokens_out, heartbeats, intents'
        conn.execute(text(f"INSERT INTO axme_counters ({fields}, shard) SELECT {fields}, 0 FROM axme_counters_v4"))
        conn.execute(text("DROP TABLE axme_counters_v4"))
    index = next(i for i in agents.indexes if i.name == "ix_axme_agents_org_created")
    index.create(conn, checkfirst=True)
