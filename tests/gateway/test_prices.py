"""The gateway as the fleet's price authority, through real gateway processes: ``/v1/prices``, loading price files,
the events, the CLI, replicas, the schema 3 → 4 migration, and heartbeats re-priced for clients that could not price."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from support.gateway_helpers import path, policy_path, send, spent
from support.gateway_process import ROOT, GatewayProcess

#: A model no bundled table knows: $3 / 1M input, $0.30 cached, $12 output (whole pico-dollars per token).
NEW_MODEL = "gpt-7-test"
OURS = f'''[meta]
provider = "ours"
checked = "2026-11-20"

[[models]]
id = "{NEW_MODEL}"
aliases = ["gpt-7-test-latest"]
source = "https://example.com/prices"
[[models.prices]]
effective = "2026-01-01"
input = "3.00"
cached_input = "0.30"
output = "12.00"
'''
#: 1000 input tokens (200 of them cached) and 500 output tokens of NEW_MODEL: 800*3 + 200*0.30 + 500*12 per 1M.
CALL_USD = Decimal("0.00846")


def load(http: httpx.Client, toml: str = OURS, name: str = "ours.toml") -> httpx.Response:
    return http.post("/v1/prices", json={"name": name, "toml": toml})


def version(http: httpx.Client) -> str:
    resp = http.get("/v1/prices")
    assert resp.status_code == 200, resp.text
    return str(resp.json()["pricing_version"])


def price_events(http: httpx.Client) -> list[dict[str, Any]]:
    return http.get("/v1/mesh/events", params={"types": "prices.loaded,prices.unloaded"}).json()["events"]


def unpriced_entry(agent: str, *, id: str, calls: int = 1, cost: str = "0", unpriced: int | None = None,
                   model: str = NEW_MODEL, intent: str | None = None) -> dict[str, Any]:
    """What a client whose table lacks ``model`` reports: its calls unpriced, with their token details."""
    details = {"llm_calls": calls, "cost_usd": cost, "tokens_in": 1000 * calls, "tokens_out": 500 * calls,
               "cached_tokens": 200 * calls, "unpriced_calls": calls if unpriced is None else unpriced}
    body: dict[str, Any] = {
        "id": id, "agent": agent, "status": "processing",
        "window_start": "2026-11-28T12:00:00Z", "window_end": "2026-11-28T12:00:30Z",
        "metrics": {"cost_usd": cost, "llm_calls": calls, "tokens_in": 1000 * calls, "tokens_out": 500 * calls,
                    "cached_tokens": 200 * calls, "unpriced_calls": details["unpriced_calls"]},
        "by_model": {model: details},
    }
    if intent is not None:
        body["intent_id"] = intent
    return body


def model_cost(http: httpx.Client, agent: str, model: str) -> Decimal:
    rows = http.get(f"/v1/mesh/agents/{path(agent)}/costs").json()["by_model"]
    return sum((Decimal(r["cost_usd"]) for r in rows if r["model"] == model), Decimal(0))


@pytest.fixture
def gw(tmp_path: Path, db_url: str) -> Iterator[GatewayProcess]:
    """A gateway of its own (loaded files are gateway-wide state), clock fixed at 2026-11-28T12:00:00Z."""
    with GatewayProcess(tmp_path, db_url=db_url, clock="2026-11-28T12:00:00Z") as gateway:
        yield gateway


# -- GET /v1/prices ------------------------------------------------------------------------------------------------


def test_any_key_reads_the_table_with_its_version_as_etag(gw: GatewayProcess) -> None:
    from axme_meter._pricing import PriceTable, bundled_files, parse_bytes

    key = gw.create_key("acme")  # not an admin key: reading prices needs only a valid key
    with gw.client(key) as http:
        resp = http.get("/v1/prices")
        assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
        body = resp.json()
        assert resp.headers["etag"] == f'"{body["pricing_version"]}"'
        assert [(f["name"], f["source"]) for f in body["files"]] == [("openai.toml", "bundled")]
        # the very bytes of the bundled file: a client of the same release computes the same version
        assert body["pricing_version"] == PriceTable(bundled_files()).version
        assert PriceTable([parse_bytes(f["toml"].encode(), f["name"]) for f in body["files"]]).version == body["pricing_version"]
        again = http.get("/v1/prices", headers={"If-None-Match": resp.headers["etag"]})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == resp.headers["etag"]
        assert http.get("/v1/prices", headers={"If-None-Match": f'W/"x", {resp.headers["etag"]}'}).status_code == 304
        assert http.get("/v1/prices", headers={"If-None-Match": '"openai-2020-01-01+sha256:000000000000"'}).status_code == 200
    assert httpx.get(f"{gw.url}/v1/prices").status_code == 401
    assert httpx.get(f"{gw.url}/v1/prices", headers={"x-api-key": "axme_sa_nope"}).status_code == 401


# -- loading -----------------------------------------------------------------------------------------------------


def test_a_loaded_file_changes_the_table_the_version_and_is_an_event(gw: GatewayProcess) -> None:
    with gw.client() as http:
        bundled = http.get("/v1/prices")
        resp = load(http)
        assert resp.status_code == 201, resp.text
        answer = resp.json()
        assert answer["models"] == [NEW_MODEL] and answer["replaced"] is False and answer["loaded"] == ["ours.toml"]
        now = http.get("/v1/prices")
        body = now.json()
        assert body["pricing_version"] == answer["pricing_version"] != bundled.json()["pricing_version"]
        assert now.headers["etag"] == f'"{answer["pricing_version"]}"' == resp.headers["etag"]
        assert http.get("/v1/prices", headers={"If-None-Match": bundled.headers["etag"]}).status_code == 200  # changed
        loaded = body["files"][1]
        assert loaded["name"] == "ours.toml" and loaded["source"] == "loaded" and loaded["toml"] == OURS
        assert loaded["models"] == [NEW_MODEL] and loaded["loaded_by"] == gw.admin_key[:16]
        assert loaded["loaded_at"] == "2026-11-28T12:00:00Z" and loaded["sha256"] == hashlib.sha256(OURS.encode()).hexdigest()
        # the same name again replaces the file (200), a corrected price is a new version
        fixed = load(http, OURS.replace('output = "12.00"', 'output = "10.00"'))
        assert fixed.status_code == 200 and fixed.json()["replaced"] is True
        assert fixed.json()["pricing_version"] != answer["pricing_version"] and fixed.json()["loaded"] == ["ours.toml"]
        events = price_events(http)
        assert [(e["type"], e["data"]["name"], e["data"]["replaced"], e["data"]["by"]) for e in reversed(events)] == [
            ("prices.loaded", "ours.toml", False, gw.admin_key[:16]), ("prices.loaded", "ours.toml", True, gw.admin_key[:16])]
        assert events[0]["data"]["pricing_version"] == fixed.json()["pricing_version"] and events[0]["agent"] is None
        # unloading goes back to the bundled table (and its version)
        gone = http.delete("/v1/prices/ours.toml")
        assert gone.status_code == 200 and gone.json()["loaded"] == []
        assert version(http) == bundled.json()["pricing_version"] == gone.json()["pricing_version"]
        assert http.delete("/v1/prices/ours.toml").status_code == 404
        assert price_events(http)[0]["type"] == "prices.unloaded"


def test_later_files_win_and_order_is_kept(gw: GatewayProcess) -> None:
    with gw.client() as http:
        assert load(http, name="a.toml").status_code == 201
        cheaper = OURS.replace('"3.00"', '"2.00"').replace('provider = "ours"', 'provider = "b"')
        assert load(http, cheaper, name="b.toml").json()["loaded"] == ["a.toml", "b.toml"]
        assert load(http, name="a.toml").json()["loaded"] == ["b.toml", "a.toml"]  # reloaded: last, so it wins
        body = http.get("/v1/prices").json()
        assert [f["name"] for f in body["files"]] == ["openai.toml", "b.toml", "a.toml"]


BAD_FILES = [
    pytest.param(OURS.replace('input = "3.00"', 'input = "-3.00"'), "prices[0].input", "must be a finite number >= 0",
                 id="negative rate"),
    pytest.param(OURS.replace('input = "3.00"', 'input = "three"'), "prices[0].input", "is not a decimal number",
                 id="non-numeric rate"),
    pytest.param(OURS.replace('input = "3.00"', 'input = 3.0'), "prices[0].input", "decimal strings", id="unquoted rate"),
    pytest.param(OURS.replace('input = "3.00"', 'rate = "3.00"'), "prices[0].rate", "has no unit", id="rate with no unit"),
    pytest.param(OURS.split("[[models.prices]]")[0] + '[[models.prices]]\neffective = "2026-01-01"\nnote = "soon"\n',
                 "prices[0]", "prices nothing", id="period without any rate"),
    pytest.param(OURS + '[[models.prices]]\neffective = "2026-01-01"\ninput = "4.00"\n', "prices",
                 "two periods start on 2026-01-01", id="overlapping history dates"),
    pytest.param(OURS + f'\n[[models]]\nid = "{NEW_MODEL}"\n[[models.prices]]\neffective = "2026-06-01"\ninput = "4.00"\n', "id",
                 "price histories overlap", id="two entries for one model"),
    pytest.param(OURS.replace('input = "3.00"', 'input = "0.0000001"'), "prices[0].input", "not a whole number",
                 id="rate finer than a pico-dollar"),
    pytest.param(OURS.replace('aliases = ["gpt-7-test-latest"]', 'aliases = ["gpt-4o"]'), "aliases",
                 "is the id of another model", id="alias taking a bundled model's name"),
]


@pytest.mark.parametrize(("toml", "field", "problem"), BAD_FILES)
def test_bad_files_are_refused_naming_model_and_field_and_nothing_is_loaded(
        gw: GatewayProcess, toml: str, field: str, problem: str) -> None:
    with gw.client() as http:
        assert load(http, name="good.toml").status_code == 201
        before = http.get("/v1/prices").json()
        resp = load(http, toml, name="good.toml")  # would replace the good file: it must stay as it was
        assert resp.status_code == 422, resp.text
        error = resp.json()["error"]
        assert error["code"] == "invalid_price_file"
        assert error["details"] == {"file": "good.toml", "model": NEW_MODEL, "field": field}
        assert problem in error["message"] and f"'{NEW_MODEL}'" in error["message"] and "Nothing was loaded" in error["message"]
        assert http.get("/v1/prices").json() == before
        assert len(price_events(http)) == 1  # only the good load


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"name": "x.toml", "toml": "[[models]\nid ="}, 422, "not valid TOML"),
    ({"name": "x.toml", "toml": '[meta]\nprovider = "x"\n'}, 422, "no [[models]] entry"),
    ({"name": "x.toml", "toml": "[" * 200_000}, 422, "not valid TOML"),
    ({"name": "../etc/passwd", "toml": OURS}, 422, "name"),
    ({"name": "x.toml", "toml": OURS, "extra": 1}, 422, "extra"),
    ({"name": "x.toml"}, 422, "toml"),
])
def test_malformed_uploads_are_4xx_and_store_nothing(gw: GatewayProcess, body: dict[str, Any], status: int, needle: str) -> None:
    with gw.client() as http:
        before = version(http)
        resp = http.post("/v1/prices", json=body)
        assert resp.status_code == status and needle in resp.json()["error"]["message"], resp.text
        assert version(http) == before and price_events(http) == []


def test_only_the_super_admin_loads_prices(gw: GatewayProcess) -> None:
    org_admin = gw.create_key("acme", admin=True)
    member = gw.create_key("acme")
    for key in (org_admin, member):
        with gw.client(key) as http:
            resp = load(http)
            assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"
            assert http.delete("/v1/prices/ours.toml").status_code == 403
    with gw.client() as http:
        assert [f["name"] for f in http.get("/v1/prices").json()["files"]] == ["openai.toml"]


def test_replicas_serve_and_announce_the_same_table(tmp_path: Path, db_url: str) -> None:
    a = GatewayProcess(tmp_path / "a", db_url=db_url)
    b = GatewayProcess(tmp_path / "b", db_url=db_url, admin_key=a.admin_key)
    with a, b, a.client() as on_a, b.client() as on_b:
        assert version(on_a) == version(on_b)
        loaded = load(on_a).json()["pricing_version"]
        assert version(on_b) == loaded  # GET reads what is committed
        deadline = time.monotonic() + 10
        while True:  # heartbeat answers announce it within about a second
            announced = send(on_b, unpriced_entry("agent://acme/prod/r", id=f"hb_r_{time.monotonic_ns()}_1")).json()
            if announced["pricing_version"] == loaded or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert announced["pricing_version"] == loaded


def test_the_default_unpriced_rates_come_from_the_effective_table(gw: GatewayProcess, agent: str) -> None:
    with gw.client() as http:
        assert http.put(policy_path(agent), json={"max_cost_per_day_usd": "5"}).status_code == 200
        before = http.post("/v1/mesh/grants", json={"agent": agent, "instance": "p1"}).json()["unpriced"]
        dearer = OURS.replace('input = "3.00"', 'input = "9000.00"').replace('output = "12.00"', 'output = "18000.00"')
        assert load(http, dearer).status_code == 201
        after = http.post("/v1/mesh/grants", json={"agent": agent, "instance": "p2"}).json()["unpriced"]
    assert Decimal(before["input_usd_per_1m"]) < 9000
    assert (Decimal(after["input_usd_per_1m"]), Decimal(after["output_usd_per_1m"])) == (9000, 18000)


# -- re-pricing what a client could not price ----------------------------------------------------------------------


def test_an_old_clients_unpriced_spend_is_priced_by_the_gateway_once(gw: GatewayProcess, agent: str) -> None:
    with gw.client() as http:
        # before the gateway knows the model: booked as the client reported it
        assert send(http, unpriced_entry(agent, id="hb_old_1_1", cost="0")).json()["results"][0]["status"] == "recorded"
        assert model_cost(http, agent, NEW_MODEL) == 0
        assert load(http).status_code == 201
        # now an unpriced entry (at $0, or at a conservative estimate) books the gateway's price
        first = send(http, unpriced_entry(agent, id="hb_old_1_2", cost="0", intent="int_repriced"))
        assert first.json()["results"][0]["status"] == "recorded"
        estimate = unpriced_entry(agent, id="hb_old_1_3", calls=2, cost="0.5")  # conservative: $0.25 a call
        assert send(http, estimate).json()["results"][0]["status"] == "recorded"
        assert model_cost(http, agent, NEW_MODEL) == 3 * CALL_USD
        assert spent(http, agent) == 3 * CALL_USD
        assert Decimal(http.get("/v1/mesh/intents/int_repriced").json()["cost_usd"]) == CALL_USD
        # replays are duplicates and book nothing, whatever the table says now
        replay = send(http, unpriced_entry(agent, id="hb_old_1_2", cost="0", intent="int_repriced"), estimate)
        assert [r["status"] for r in replay.json()["results"]] == ["duplicate", "duplicate"]
        assert load(http, OURS.replace('output = "12.00"', 'output = "24.00"')).status_code == 200
        again = send(http, unpriced_entry(agent, id="hb_old_1_2", cost="0", intent="int_repriced"))
        assert again.json()["results"][0]["status"] == "duplicate"
        assert spent(http, agent) == 3 * CALL_USD


def test_what_the_gateway_cannot_split_or_price_is_booked_as_reported(gw: GatewayProcess, agent: str) -> None:
    with gw.client() as http:
        assert load(http).status_code == 201
        mixed = unpriced_entry(agent, id="hb_mix_1_1", calls=2, cost="0.01", unpriced=1)  # one call priced by the client
        no_details = unpriced_entry(agent, id="hb_mix_1_2", cost="0.02")
        del no_details["by_model"][NEW_MODEL]["unpriced_calls"]  # an entry from before per-model details
        unknown = unpriced_entry(agent, id="hb_mix_1_3", cost="0.04", model="gpt-99-nobody-knows")
        results = send(http, mixed, no_details, unknown).json()["results"]
        assert [r["status"] for r in results] == ["recorded"] * 3
        assert spent(http, agent) == Decimal("0.07")


def test_re_priced_spend_counts_against_the_budget(gw: GatewayProcess, agent: str) -> None:
    with gw.client() as http:
        assert http.put(policy_path(agent), json={"max_cost_per_day_usd": str(2 * CALL_USD)}).status_code == 200
        assert load(http).status_code == 201
        ok = send(http, unpriced_entry(agent, id="hb_b_1_1", cost="0"))
        assert ok.status_code == 200 and ok.json()["agents"][agent]["state"] == "active"
        over = send(http, unpriced_entry(agent, id="hb_b_1_2", cost="0"))
        assert over.status_code == 429 and over.json()["error"]["code"] == "budget_exceeded"
        assert over.json()["agents"][agent]["state"] == "blocked" and spent(http, agent) == 2 * CALL_USD


def test_long_context_rates_apply_to_the_average_call(gw: GatewayProcess, agent: str) -> None:
    toml = OURS.replace('output = "12.00"', 'output = "12.00"\nlong_context = { threshold = 1500, input = "6.00", output = "18.00" }')
    with gw.client() as http:
        assert load(http, toml).status_code == 201
        # three calls of 1000 input tokens: 3000 in the aggregate, but each call is under the 1500 threshold
        send(http, unpriced_entry(agent, id="hb_lc_1_1", calls=3))
        assert spent(http, agent) == 3 * CALL_USD


# -- schema 3 -> 4 -----------------------------------------------------------------------------------------------


#: The fields a schema-3 gateway's models had (what its entry digests covered).
_V3_MODEL = ("llm_calls", "cost_usd", "tokens_in", "tokens_out", "cached_tokens", "reasoning_tokens")
_V3_METRICS = (*_V3_MODEL, "estimated_calls", "unpriced_calls", "intents_total", "intents_succeeded", "intents_failed",
               "avg_latency_ms")


def _old_digest(entry: dict[str, Any]) -> str:
    """The digest a schema-3 gateway stored for an entry: sha256 over its agent, intent and every field of its models."""
    from axme_meter.gateway._schemas import HeartbeatEntry

    parsed = HeartbeatEntry.model_validate(entry)
    metrics = parsed.metrics.model_dump(mode="json")
    content = {"agent": entry["agent"], "intent_id": parsed.intent_id, "metrics": {k: metrics[k] for k in _V3_METRICS},
               "by_model": {m: {k: v.model_dump(mode="json")[k] for k in _V3_MODEL} for m, v in parsed.by_model.items()}}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_schema_3_databases_migrate_and_old_entries_still_deduplicate(tmp_path: Path, db_url: str) -> None:
    from axme_meter.gateway._db import SCHEMA_VERSION, make_engine

    agent = "agent://acme/production/migrated"
    old = {"id": "hb_v3_1_1", "agent": agent, "window_start": "2026-11-28T12:00:00Z",
           "metrics": {"cost_usd": "1.50", "llm_calls": 2, "tokens_in": 10, "tokens_out": 5},
           "by_model": {"gpt-4o": {"cost_usd": "1.50", "llm_calls": 2, "tokens_in": 10, "tokens_out": 5}}}
    with GatewayProcess(tmp_path / "a", db_url=db_url) as gw, gw.client() as http:
        assert send(http, old).json()["results"][0]["status"] == "recorded"
    engine = make_engine(db_url)
    try:  # what a schema-3 gateway left: no price files table, its digest form
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE axme_price_files"))
            conn.execute(text("UPDATE axme_schema_version SET version = 3"))
            conn.execute(text("UPDATE axme_entries SET digest = :d WHERE entry_id = 'hb_v3_1_1'"), {"d": _old_digest(old)})
    finally:
        engine.dispose()
    with GatewayProcess(tmp_path / "b", db_url=db_url) as gw, gw.client() as http:
        assert send(http, old).json()["results"][0]["status"] == "duplicate"  # replayed across the upgrade
        changed = {**old, "metrics": {**old["metrics"], "cost_usd": "2"}}
        assert send(http, changed).json()["results"][0]["status"] == "conflict"
        assert load(http).status_code == 201 and spent(http, agent) == Decimal("1.5")
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version FROM axme_schema_version")).scalar() == SCHEMA_VERSION
            assert conn.execute(text("SELECT name FROM axme_price_files")).scalars().all() == ["ours.toml"]
    finally:
        engine.dispose()


# -- the CLI -----------------------------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AXME_")}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "axme_meter", "prices", *args], capture_output=True, text=True,
                          timeout=120, env={**base, **(env or {})}, cwd=str(ROOT))


def test_prices_load_unload_and_loaded_through_the_cli(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    good = tmp_path / "ours.toml"
    good.write_text(OURS)
    bad = tmp_path / "bad.toml"
    bad.write_text(OURS.replace('input = "3.00"', 'input = "-3"'))
    with GatewayProcess(tmp_path, db_url=db) as gw:
        over_http = _cli("load", str(good), "--gateway", gw.url, env={"AXME_API_KEY": gw.admin_key})
        assert over_http.returncode == 0, over_http.stderr
        assert over_http.stdout.splitlines()[0] == f"loaded ours.toml: 1 model(s) ({NEW_MODEL})"
        with gw.client() as http:
            assert f"pricing_version: {version(http)}" in over_http.stdout
        refused = _cli("load", str(bad), "--name", "ours.toml", "--db", db)
        assert refused.returncode == 1 and refused.stdout == "" and "Traceback" not in refused.stderr
        assert refused.stderr.count("\n") == 1 and f"model '{NEW_MODEL}'" in refused.stderr
        assert "prices[0].input" in refused.stderr and "Nothing was loaded" in refused.stderr
        in_db = _cli("load", str(good), "--name", "second.toml", "--db", db)
        assert in_db.returncode == 0 and "loaded files: ours.toml, second.toml" in in_db.stdout
        listed = _cli("loaded", "--json", "--gateway", gw.url, "--api-key", gw.admin_key)
        files = json.loads(listed.stdout)["files"]
        assert [(f["name"], f["source"], f.get("loaded_by")) for f in files] == [
            ("openai.toml", "bundled", None), ("ours.toml", "loaded", gw.admin_key[:16]), ("second.toml", "loaded", "cli")]
        assert all("toml" not in f for f in files)
        assert "second.toml: 1 model(s) loaded" in _cli("loaded", "--db", db).stdout
        unloaded = _cli("unload", "second.toml", "--gateway", gw.url, "--api-key", gw.admin_key)
        assert unloaded.returncode == 0 and "loaded files: ours.toml" in unloaded.stdout
        missing = _cli("unload", "second.toml", "--db", db)
        assert missing.returncode == 1 and "not found" in missing.stderr and "Traceback" not in missing.stderr
        not_super = _cli("load", str(good), "--gateway", gw.url, "--api-key", gw.create_key("acme", admin=True))
        assert not_super.returncode == 1 and "403" in not_super.stderr and "super-admin" in not_super.stderr
        with gw.client() as http:
            events = [(e["type"], e["data"]["name"], e["data"]["by"]) for e in reversed(price_events(http))]
        assert events == [("prices.loaded", "ours.toml", gw.admin_key[:16]), ("prices.loaded", "second.toml", "cli"),
                          ("prices.unloaded", "second.toml", gw.admin_key[:16])]
    no_file = _cli("load", str(tmp_path / "nope.toml"), "--db", db)
    assert no_file.returncode == 2 and "cannot read" in no_file.stderr and "Traceback" not in no_file.stderr
    both = _cli("load", str(good), "--db", db, "--gateway", "http://127.0.0.1:9")
    assert both.returncode == 2 and "not both" in both.stderr
    listing = _cli("gpt-4o*", env={"AXME_GATEWAY_URL": "http://127.0.0.1:9"})  # still the offline listing
    assert listing.returncode == 0 and listing.stdout.startswith("price table openai-") and listing.stderr == ""
