"""Per-entry outcomes over real HTTP: conflicts by content, refusals one by one, client-reported blocks,
and the schema 2 → 3 migration that stores entry digests (SQLite and PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from support.gateway_helpers import entry, path, send, spent
from support.gateway_process import GatewayProcess


def _results(resp: httpx.Response) -> list[tuple[str, str | None]]:
    assert resp.status_code == 200, resp.text
    return [(r["status"], (r["error"] or {}).get("code")) for r in resp.json()["results"]]


def test_a_replayed_id_with_other_content_is_a_conflict_and_books_nothing(gateway: GatewayProcess, agent: str) -> None:
    other = agent + "-other"
    first = entry(agent, "0.5", id=agent + "/hb_1")
    with gateway.client() as http:
        assert _results(send(http, first)) == [("recorded", None)]
        assert _results(send(http, first)) == [("duplicate", None)]
        resp = send(http, {**first, "metrics": {**first["metrics"], "cost_usd": "0.8"}}, {**first, "agent": other},
                    {**first, "window_end": "2026-11-28T12:00:31Z", "status": "done"})
        assert _results(resp) == [("conflict", "conflict"), ("conflict", "conflict"), ("duplicate", None)]
        reasons = [r["error"]["message"] for r in resp.json()["results"][:2]]
        assert "different amounts" in reasons[0] and "another agent" in reasons[1]
        # inside one batch: the first occurrence of an id is recorded, a different second one conflicts
        fresh = entry(agent, "1", id=agent + "/hb_2")
        assert _results(send(http, fresh, {**fresh, "intent_id": "int_x"}, fresh)) == [
            ("recorded", None), ("conflict", "conflict"), ("duplicate", None)]
        assert spent(http, agent) == Decimal("1.5")
        assert spent(http, other) == 0


def test_a_batch_whose_entries_are_all_refused_is_still_answered_entry_by_entry(gateway: GatewayProcess, agent: str) -> None:
    key = gateway.create_key("acme")
    with gateway.client(key) as http:
        resp = send(http, entry("agent://globex/production/x", "1"), {**entry(agent), "metrics": {"cost_usd": "-1"}})
        assert _results(resp) == [("error", "forbidden"), ("error", "validation_error")]
        assert resp.json()["agents"] == {}


def _blocks(*items: dict[str, Any]) -> list[dict[str, Any]]:
    base = {"source": "local", "policy": "max_cost_per_day_usd", "limit": "5.00", "spent": "4.90",
            "resets_at": "2026-11-29T00:00:00Z", "at": "2026-11-28T12:00:00Z", "instance": "aaaa00000001"}
    return [{**base, **item} for item in items]


def _agent(http: httpx.Client, agent: str) -> dict[str, Any]:
    return next(a for a in http.get("/v1/mesh/agents").json()["agents"] if a["address"] == agent)


def _client_events(http: httpx.Client, agent: str) -> list[dict[str, Any]]:
    events = http.get("/v1/mesh/events", params={"agent": agent, "type": "agent.blocked"}).json()["events"]
    return [e["data"] for e in events if e["data"].get("source") == "client"]


def test_client_blocks_are_recorded_once_shown_while_current_and_cleared(clocked_gateway: GatewayProcess) -> None:
    gw = clocked_gateway
    mine = "agent://acme/production/stopped"
    key = gw.create_key("acme")
    with gw.client(key) as http:
        body = {"heartbeats": [entry(mine, "0.1", id="hb_aaaa00000001_1_1")],
                "blocks": _blocks({"agent": mine}, {"agent": "agent://globex/production/theirs"})}
        assert http.post("/v1/mesh/heartbeat", json=body).status_code == 200
        for n in range(2, 4):  # repeated with every heartbeat while it holds
            body = {"heartbeats": [entry(mine, "0.1", id=f"hb_aaaa00000001_{n}_1")], "blocks": _blocks({"agent": mine})}
            assert http.post("/v1/mesh/heartbeat", json=body).status_code == 200
        listed = _agent(http, mine)
        assert listed["client_block"] == {"policy": "max_cost_per_day_usd", "limit": "5.00", "spent": "4.90",
                                          "resets_at": "2026-11-29T00:00:00Z", "at": "2026-11-28T12:00:00Z",
                                          "source": "local"}
        assert http.get(f"/v1/mesh/agents/{path(mine)}").json()["client_block"] == listed["client_block"]
        assert _client_events(http, mine) == [{"agent": mine, "source": "client", "client_source": "local",
                                               "policy": "max_cost_per_day_usd", "limit": "5.00", "spent": "4.90",
                                               "resets_at": "2026-11-29T00:00:00Z", "at": "2026-11-28T12:00:00Z"}]
        # Another process's spend does not lift it; the reporting process's own spend without it does.
        assert send(http, entry(mine, "0.1", id="hb_bbbb00000002_1_1")).status_code == 200
        assert "client_block" in _agent(http, mine)
        assert send(http, entry(mine, "0.1", id="hb_aaaa00000001_9_1")).status_code == 200
        assert "client_block" not in _agent(http, mine)
        # A block with a reset: gone once the reset passes. Without one (fail-closed): gone after an hour.
        http.post("/v1/mesh/heartbeat", json={"heartbeats": [entry(mine, "0", id="hb_cccc00000003_1_1")],
                                              "blocks": _blocks({"agent": mine, "instance": "cccc00000003"})})
        assert "client_block" in _agent(http, mine)
        gw.set_clock("2026-11-29T00:00:01Z")
        assert "client_block" not in _agent(http, mine)
        http.post("/v1/mesh/heartbeat", json={"heartbeats": [entry(mine, "0", id="hb_cccc00000003_2_1")], "blocks": _blocks(
            {"agent": mine, "source": "fail_closed", "policy": "gateway_unreachable", "limit": None, "spent": None,
             "resets_at": None, "instance": "cccc00000003"})})
        assert _agent(http, mine)["client_block"]["source"] == "fail_closed"
        gw.set_clock("2026-11-29T01:00:02Z")
        assert "client_block" not in _agent(http, mine)
    with gw.client() as admin:  # the report for another org's agent was ignored
        theirs = [a for a in admin.get("/v1/mesh/agents").json()["agents"] if a["address"] == "agent://globex/production/theirs"]
        # one event per agent × policy × window: the second process's local block was the same window's
        assert theirs == [] and [e["client_source"] for e in _client_events(admin, mine)] == ["fail_closed", "local"]


def test_schema_2_databases_gain_digests_and_old_entries_still_deduplicate(tmp_path: Path, db_url: str) -> None:
    from axme_meter.gateway._db import SCHEMA_VERSION, make_engine

    agent = "agent://acme/production/migrated"
    with GatewayProcess(tmp_path / "a", db_url=db_url) as gw, gw.client() as http:
        assert _results(send(http, entry(agent, "2", id="hb_old_1_1"))) == [("recorded", None)]
    engine = make_engine(db_url)
    try:  # make it look like schema 2: no digest (old rows), no client_block column
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE axme_entries DROP COLUMN digest"))
            conn.execute(text("ALTER TABLE axme_agents DROP COLUMN client_block"))
            conn.execute(text("UPDATE axme_schema_version SET version = 2"))
    finally:
        engine.dispose()
    with GatewayProcess(tmp_path / "b", db_url=db_url) as gw, gw.client() as http:
        same = entry(agent, "2", id="hb_old_1_1")
        assert _results(send(http, same)) == [("duplicate", None)]  # no digest yet: compared by agent only
        assert _results(send(http, {**same, "agent": agent + "-x"})) == [("conflict", "conflict")]
        assert _results(send(http, entry(agent, "1", id="hb_new_1_1"))) == [("recorded", None)]
        assert _results(send(http, entry(agent, "3", id="hb_new_1_1"))) == [("conflict", "conflict")]
        assert spent(http, agent) == Decimal("3")
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version FROM axme_schema_version")).scalar() == SCHEMA_VERSION
    finally:
        engine.dispose()


@pytest.mark.parametrize("body", [
    {"heartbeats": [{"id": "x"}], "blocks": [{"agent": "agent://acme/p/x", "source": "local", "resets_at": "soon"}]},
    {"heartbeats": [{"id": "x"}], "blocks": {"agent": "agent://acme/p/x"}},
])
def test_malformed_block_reports_are_422(gateway: GatewayProcess, body: dict[str, Any]) -> None:
    with gateway.client() as http:
        resp = http.post("/v1/mesh/heartbeat", json=body)
        assert resp.status_code == 422 and resp.json()["error"]["details"]["field"].startswith("blocks")
