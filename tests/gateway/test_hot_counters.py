"""Sharded counters (schema 5): many writers of one agent on two replicas stay exact, enforce at the exact
amount, and a schema-4 database keeps its totals when it is upgraded."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import BigInteger, Column, MetaData, String, Table, text

from support.gateway_helpers import entry, path, policy_path, send
from support.gateway_process import GatewayProcess

HOT = "agent://acme/production/hot"
WRITERS = 16
BATCHES = 12
PER_BATCH = 10


def _hammer(gws: tuple[GatewayProcess, ...], cost: str, *, agent: str = HOT) -> list[int]:
    """``WRITERS`` client processes' worth of threads, alternating replicas, all writing ``agent`` at once."""
    barrier = threading.Barrier(WRITERS)

    def writer(w: int) -> list[int]:
        codes = []
        with gws[w % len(gws)].client() as http:
            barrier.wait()
            for b in range(BATCHES):
                batch = [entry(agent, cost, id=f"hb_w{w}_{b}_{i}", intent=f"int_w{w}", models={"gpt-4o": cost})
                         for i in range(PER_BATCH)]
                codes.append(send(http, *batch).status_code)
        return codes

    with ThreadPoolExecutor(WRITERS) as pool:
        return [c for codes in pool.map(writer, range(WRITERS)) for c in codes]


@pytest.mark.postgres
def test_concurrent_writers_of_one_agent_on_two_replicas_are_exact_and_spread_over_shards(
        pg_replicas: tuple[GatewayProcess, GatewayProcess], postgres_url: str) -> None:
    a, b = pg_replicas
    codes = _hammer((a, b), "0.000000000001")  # one pico-dollar per entry: any lost or doubled update shows
    assert set(codes) == {200}
    n = WRITERS * BATCHES * PER_BATCH
    for gw in (a, b):
        with gw.client() as http:
            day = http.get(f"/v1/mesh/agents/{path(HOT)}").json()["windows"]["day"]
            assert day["heartbeats"] == n and Decimal(day["cost_usd"]) == Decimal("0.000000000001") * n
            costs = http.get(f"/v1/mesh/agents/{path(HOT)}/costs").json()
            assert Decimal(costs["totals"]["cost_usd"]) == Decimal(day["cost_usd"])
            assert [Decimal(m["cost_usd"]) for m in costs["by_model"]] == [Decimal(day["cost_usd"])]
            assert sum(i["heartbeats"] for i in costs["by_intent"]) == n
            listed = http.get("/v1/mesh/agents", params={"q": "hot"}).json()
            assert [Decimal(x["cost_today"]) for x in listed["agents"]] == [Decimal(day["cost_usd"])]
    # the point of the shards: concurrent transactions of one agent added to different rows
    from axme_meter.gateway._db import make_engine

    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            shards = conn.execute(text("SELECT count(DISTINCT shard) FROM axme_counters WHERE dim = 'total' "
                                       "AND \"window\" = 'day'")).scalar()
    finally:
        engine.dispose()
    assert shards and shards > 1


@pytest.mark.postgres
def test_a_policy_blocks_at_the_exact_amount_with_sharded_counters(pg_replicas: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = pg_replicas
    limit = Decimal("0.01") * WRITERS * BATCHES * PER_BATCH  # exactly what the writers spend
    with a.client() as http:
        assert http.put(policy_path(HOT), json={"max_cost_per_day_usd": str(limit)}).status_code == 200
    codes = _hammer((a, b), "0.01")
    assert 200 in codes and set(codes) <= {200, 429}  # the last batches may already see the block
    for gw in (a, b):
        with gw.client() as http:
            detail = http.get(f"/v1/mesh/agents/{path(HOT)}").json()
            assert Decimal(detail["windows"]["day"]["cost_usd"]) == limit
            assert detail["state"] == "blocked"
            listed = http.get("/v1/mesh/agents", params={"q": "hot", "sort": "state"}).json()
            assert listed["summary"]["blocked"] == 1 and listed["agents"][0]["state"] == "blocked"
    # one pico-dollar of headroom and it is active again: blocked is derived from the summed shards
    with a.client() as http:
        raised = limit + Decimal("0.000000000001")
        assert http.put(policy_path(HOT), json={"max_cost_per_day_usd": str(raised)}).status_code == 200
        assert http.get(f"/v1/mesh/agents/{path(HOT)}").json()["state"] == "active"
        grant = http.post("/v1/mesh/grants", json={"agent": HOT, "instance": "g1", "call_cost_usd": "0.000000000001"})
        assert grant.status_code == 200, grant.text
        assert sum(Decimal(g["amount"]) for g in grant.json()["grants"]) <= Decimal("0.000000000001")


def _v4_counters(metadata: MetaData) -> Table:
    """``axme_counters`` exactly as schema 4 declared it: one row per key, no ``shard``."""
    return Table(
        "axme_counters", metadata,
        Column("address_id", String(40), primary_key=True), Column("window", String(8), primary_key=True),
        Column("start", BigInteger, primary_key=True), Column("dim", String(8), primary_key=True),
        Column("key", String(200), primary_key=True),
        *(Column(f, BigInteger, nullable=False) for f in ("cost_pico", "llm_calls", "tokens_in", "tokens_out", "heartbeats", "intents")),
    )


def _downgrade_to_v4(db_url: str) -> None:
    """Turn the database into what schema-4 code left behind: counters folded into one row per key in the v4
    table, the version row at 4 and the new index gone."""
    from axme_meter.gateway._db import make_engine

    fields = "cost_pico, llm_calls, tokens_in, tokens_out, heartbeats, intents"
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE counters_copy AS SELECT address_id, \"window\", start, dim, key, "
                              + ", ".join(f"SUM({f}) AS {f}" for f in fields.split(", "))
                              + " FROM axme_counters GROUP BY address_id, \"window\", start, dim, key"))
            conn.execute(text("DROP TABLE axme_counters"))
            _v4_counters(MetaData()).create(conn)
            conn.execute(text(f"INSERT INTO axme_counters (address_id, \"window\", start, dim, key, {fields}) "
                              f"SELECT address_id, \"window\", start, dim, key, {fields} FROM counters_copy"))
            conn.execute(text("DROP TABLE counters_copy"))
            conn.execute(text("DROP INDEX ix_axme_agents_org_created"))
            conn.execute(text("UPDATE axme_schema_version SET version = 4"))
    finally:
        engine.dispose()


def test_a_schema_4_database_upgrades_with_its_totals_and_blocks_at_the_same_amount(tmp_path: Path, db_url: str) -> None:
    agents = [f"agent://acme/production/old-{i}" for i in range(3)]
    gw = GatewayProcess(tmp_path / "v4", db_url=db_url, clock="2026-11-28T12:00:00Z")
    with gw, gw.client() as http:
        assert http.put(policy_path(agents[0]), json={"max_cost_per_day_usd": "1.000000000003"}).status_code == 200
        for n in range(3):
            batch = [entry(a, "0.333333333333", id=f"hb_old_{n}_{i}", intent=f"int_{n}", models={"m": "0.333333333333"})
                     for i, a in enumerate(agents)]
            assert send(http, *batch).status_code == 200
        before = {a: http.get(f"/v1/mesh/agents/{path(a)}/costs").json() for a in agents}
    _downgrade_to_v4(db_url)
    # two replicas start on the old database at once: one migrates, the other waits for it and finds it done
    second = GatewayProcess(tmp_path / "v5b", db_url=db_url, admin_key=gw.admin_key, clock_file=gw.clock_file)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda g: g.start(), (gw, second)))
    try:
        with gw.client() as http:
            for a in agents:
                assert http.get(f"/v1/mesh/agents/{path(a)}/costs").json() == before[a]
            detail = http.get(f"/v1/mesh/agents/{path(agents[0])}").json()
            assert detail["windows"]["day"]["cost_usd"] == "0.999999999999" and detail["state"] == "active"
            # 4 pico-dollars short of the limit; 4 more reach it exactly (old row + new row summed): recorded, and blocked
            answer = send(http, entry(agents[0], "0.000000000004", id="hb_new_1"))
            assert answer.status_code == 429 and answer.json()["results"][0]["status"] == "recorded"
            detail = http.get(f"/v1/mesh/agents/{path(agents[0])}").json()
            assert detail["windows"]["day"]["cost_usd"] == "1.000000000003" and detail["state"] == "blocked"
        from axme_meter.gateway._db import SCHEMA_VERSION, make_engine

        engine = make_engine(db_url)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT version FROM axme_schema_version")).scalar() == SCHEMA_VERSION >= 5
        finally:
            engine.dispose()
    finally:
        second.stop()
        gw.stop()


def test_sqlite_keeps_one_counter_row_per_key_in_shard_zero(tmp_path: Path) -> None:
    """SQLite has one writer: counters keep one row per key there (shard 0), so its reads stay one lookup."""
    with GatewayProcess(tmp_path) as gw, gw.client() as http:
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda n: send(http, entry(HOT, "0.01", id=f"hb_s_{n}")).status_code, range(40)))
        assert set(codes) == {200}
        assert http.get(f"/v1/mesh/agents/{path(HOT)}").json()["windows"]["day"]["cost_usd"] == "0.40"
    from axme_meter.gateway._db import make_engine

    engine = make_engine(gw.db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT DISTINCT shard FROM axme_counters")).scalars().all() == [0]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_the_shard_lock_claim_gives_concurrent_transactions_distinct_shards(postgres_url: str) -> None:
    """Two open transactions asking for one agent's shard get different ones; after commit, shard 0 is free again."""
    from axme_meter.gateway import _shards
    from axme_meter.gateway._db import make_engine, migrate

    engine = make_engine(postgres_url)
    migrate(engine)
    aid = "addr_" + "ab" * 12
    try:
        with engine.connect() as one, engine.connect() as two:
            with one.begin(), two.begin():
                first, second = _shards.choose(one, [aid])[aid], _shards.choose(two, [aid])[aid]
                assert (first, second) == (0, 1)
                assert _shards.choose(one, [aid])[aid] == 0  # a transaction keeps the shard it holds
            with two.begin():
                assert _shards.choose(two, [aid])[aid] == 0
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_many_agents_in_one_transaction_do_not_take_a_lock_each(postgres_url: str) -> None:
    from axme_meter.gateway import _shards
    from axme_meter.gateway._db import make_engine

    engine = make_engine(postgres_url)
    aids = [f"addr_{n:024x}" for n in range(_shards.MAX_LOCKED_AGENTS + 1)]
    try:
        with engine.connect() as conn, conn.begin():
            chosen = _shards.choose(conn, aids)
            held = conn.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")).scalar()
        assert set(chosen) == set(aids) and all(0 <= s < _shards.SHARDS for s in chosen.values()) and held == 0
    finally:
        engine.dispose()
