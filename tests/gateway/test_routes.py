"""Route logic in-process (``httpx.ASGITransport`` against ``create_app``): policy evaluation, error bodies,
input hardening (every refusal a 422 naming the field) and key scopes. Real processes are used elsewhere
for replicas, SIGKILL and the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from support.gateway_helpers import entry, path, policy_path
from support.inprocess import InProcessGateway, inprocess_gateway

A = "agent://acme/production/routes"
B = "agent://acme/production/other"


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    async with inprocess_gateway(tmp_path) as gateway:
        yield gateway


@pytest.fixture
async def gw_any(tmp_path: Path, db_url: str) -> AsyncIterator[InProcessGateway]:
    """On SQLite and, when configured, on PostgreSQL: for the policy evaluation tests."""
    async with inprocess_gateway(tmp_path, db_url=db_url) as gateway:
        yield gateway


async def _beat(gw: InProcessGateway, agent: str, cost: str, *, key: str | None = None, **kw: Any) -> Any:
    headers = {"x-api-key": key} if key else {}
    return await gw.http.post("/v1/mesh/heartbeat", json={"heartbeats": [entry(agent, cost, **kw)]}, headers=headers)


def _error(resp: Any, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and error["message"], error
    if field is not None:
        assert error["details"]["field"] == field, error
        assert status != 422 or error["message"].startswith(field), error  # a 422's message names the field first
    return error  # type: ignore[no-any-return]


# -- policy evaluation -----------------------------------------------------------------------------

async def test_day_limit_blocks_with_the_axme_body_and_lifts_at_midnight(gw_any: InProcessGateway) -> None:
    gw = gw_any
    assert (await gw.http.put(policy_path(A), json={"max_cost_per_day_usd": "1.00"})).status_code == 200
    first = await _beat(gw, A, "0.60")
    assert first.status_code == 200
    policy = first.json()["agents"][A]["policies"][0]
    assert (policy["name"], policy["limit"], policy["spent"], policy["remaining"]) == ("max_cost_per_day_usd", "1.00", "0.60", "0.40")
    over = await _beat(gw, A, "0.45")
    error = _error(over, 429, "budget_exceeded")
    assert error["details"] == {"dimension": "max_cost_per_day_usd", "used": "1.05", "limit": "1.00",
                                "reset_at": "2026-11-29T00:00:00Z"}
    assert error["agent"] == A and error["spent"] == "1.05"
    assert over.headers["x-should-retry"] == "false" and int(over.headers["retry-after"]) == 12 * 3600
    gw.set_clock("2026-11-29T00:00:01Z")
    again = await _beat(gw, A, "0.10")
    assert again.status_code == 200 and again.json()["agents"][A]["policies"][0]["spent"] == "0.10"


async def test_raising_the_limit_lifts_a_block_at_once(gw_any: InProcessGateway) -> None:
    gw = gw_any
    await gw.http.put(policy_path(A), json={"max_cost_per_hour_usd": "0.50"})
    assert (await _beat(gw, A, "0.50")).status_code == 429
    await gw.http.put(policy_path(A), json={"max_cost_per_hour_usd": "0.75"})
    ok = await _beat(gw, A, "0")
    assert ok.status_code == 200 and ok.json()["agents"][A]["policies"][0]["remaining"] == "0.25"


async def test_pause_resume_kill_answers(gw_any: InProcessGateway) -> None:
    gw = gw_any
    assert (await _beat(gw, A, "0.01")).status_code == 200
    paused = await gw.http.post(f"/v1/mesh/agents/{path(A)}/pause")
    assert paused.json()["state"] == "paused" and paused.json()["previous_state"] == "active"
    _error(await _beat(gw, A, "0.01"), 429, "agent_paused")
    await gw.http.post(f"/v1/mesh/agents/{path(A)}/kill")
    _error(await _beat(gw, A, "0.01"), 403, "agent_killed")
    await gw.http.post(f"/v1/mesh/agents/{path(A)}/resume")
    assert (await _beat(gw, A, "0.01")).status_code == 200


async def test_intent_count_limit_refuses_the_third_intent(gw_any: InProcessGateway) -> None:
    gw = gw_any
    await gw.http.put(policy_path(A), json={"max_intents_per_day": 2})
    for n in range(2):
        assert (await gw.http.post("/v1/mesh/intents", json={"agent": A, "intent_id": f"job-{n}"})).status_code == 201
    again = await gw.http.post("/v1/mesh/intents", json={"agent": A, "intent_id": "job-0"})
    assert again.status_code == 201 and again.json()["created"] is False  # re-registering starts no new work
    error = _error(await gw.http.post("/v1/mesh/intents", json={"agent": A, "intent_id": "job-2"}), 429, "budget_exceeded")
    assert error["details"]["dimension"] == "max_intents_per_day" and error["details"]["used"] == "2"


# -- error bodies ----------------------------------------------------------------------------------

async def test_auth_and_routing_errors_have_the_json_shape(gw: InProcessGateway) -> None:
    _error(await gw.http.get("/v1/mesh/agents", headers={"x-api-key": ""}), 401, "unauthorized")
    _error(await gw.http.get("/v1/mesh/agents", headers={"x-api-key": "axme_sa_unknown"}), 401, "unauthorized")
    _error(await gw.http.get(f"/v1/mesh/agents/{path(A)}"), 404, "not_found")
    _error(await gw.http.get("/v1/mesh/nowhere"), 404, "not_found")
    _error(await gw.http.patch(policy_path(A), json={}), 405, "method_not_allowed")
    _error(await gw.http.post("/v1/mesh/heartbeat", content=b"{nope"), 400, "invalid_json")
    _error(await gw.http.put(policy_path(A), json={"action_on_breach": "block"}), 422, "validation_error")
    user = await gw.create_key("acme")
    _error(await gw.http.put(policy_path(A), json={"max_cost_per_day_usd": "1"}, headers={"x-api-key": user}), 403, "forbidden")


MONEY_CASES = ["1_000", "1e3", " 1.5 ", "+1", "1.", ".5", "0x10", "１", "NaN", "Infinity"]


@pytest.mark.parametrize("value", MONEY_CASES)
async def test_money_strings_follow_the_published_pattern(gw: InProcessGateway, value: str) -> None:
    error = _error(await gw.http.put(policy_path(A), json={"max_cost_per_day_usd": value}), 422, "validation_error",
                   "max_cost_per_day_usd")
    assert "decimal string" in error["message"] or "finite" in error["message"]
    body = entry(A, "0.01")
    body["metrics"]["cost_usd"] = value
    _error(await gw.http.post("/v1/mesh/heartbeat", json=body), 422, "validation_error", "metrics.cost_usd")


async def test_money_as_json_numbers_and_plain_strings_still_works(gw: InProcessGateway) -> None:
    for value, shown in [(2, "2.00"), (2.5, "2.50"), ("3", "3.00"), ("0.000000000001", "0.000000000001")]:
        resp = await gw.http.put(policy_path(A), json={"max_cost_per_day_usd": value})
        assert resp.status_code == 200 and resp.json()["max_cost_per_day_usd"] == shown
    body = entry(B, "0")
    body["metrics"]["cost_usd"] = 0.25
    resp = await gw.http.post("/v1/mesh/heartbeat", json=body)
    assert resp.status_code == 200 and (await gw.http.get(f"/v1/mesh/agents/{path(B)}")).json()["cost_today"] == "0.25"
    _error(await gw.http.put(policy_path(A), json={"max_cost_per_day_usd": "-5"}), 422, "validation_error", "max_cost_per_day_usd")


@pytest.mark.parametrize("zone", ["localtime", "", "posixrules", "Factory", "Mars/Olympus", "../etc/passwd", "/etc/localtime"])
async def test_time_zones_must_be_iana_names(gw: InProcessGateway, zone: str) -> None:
    error = _error(await gw.http.put(policy_path(A), json={"max_cost_per_day_usd": "1", "timezone": zone}), 422,
                   "validation_error", "timezone")
    assert "IANA" in error["message"]


async def test_iana_zones_are_accepted(gw: InProcessGateway) -> None:
    for zone in ("UTC", "Europe/Berlin", "Asia/Kolkata", "America/Argentina/Buenos_Aires"):
        resp = await gw.http.put(policy_path(A), json={"max_cost_per_day_usd": "1", "timezone": zone})
        assert resp.status_code == 200 and resp.json()["timezone"] == zone


@pytest.mark.parametrize("intent", ["a/b", "/", ".", "..", "tab\there", "x" * 201])
async def test_intent_ids_outside_the_documented_set_get_422(gw: InProcessGateway, intent: str) -> None:
    # in a batch, the entry is refused on its own (its neighbours would be recorded); alone, the request is a 422
    refused = (await _beat(gw, A, "0.01", intent=intent)).json()["results"][0]
    assert refused["status"] == "error" and refused["error"]["code"] == "validation_error"
    assert refused["error"]["field"] == "heartbeats.0.intent_id"
    _error(await gw.http.post("/v1/mesh/heartbeat", json=entry(A, "0.01", intent=intent)), 422, "validation_error",
           "intent_id")
    _error(await gw.http.post("/v1/mesh/intents", json={"agent": A, "intent_id": intent}), 422, "validation_error", "intent_id")


@pytest.mark.parametrize("intent", ["ticket-42", "...", "<b>&amp;", "a b?c#d%e", "naïve-ünïcode", "x" * 200])
async def test_every_accepted_intent_id_is_reachable(gw: InProcessGateway, intent: str) -> None:
    from urllib.parse import quote

    assert (await _beat(gw, A, "0.05", intent=intent)).status_code == 200
    got = await gw.http.get(f"/v1/mesh/intents/{quote(intent, safe='')}")
    assert got.status_code == 200 and got.json()["intent_id"] == intent and got.json()["cost_usd"] == "0.05"


@pytest.mark.parametrize(("name", "value"), [
    ("from", "0001-01-01T00:00:00Z"), ("to", "9999-12-31T23:59:59Z"), ("to", "9999-01-01T00:00:00Z"),
    ("from", "1969-12-31T23:59:59Z"), ("to", "3000-01-01T00:00:01Z"), ("from", "0001-01-01T00:00:00+01:00"),
    ("to", "9999-12-31T23:59:59-01:00"), ("from", "yesterday"),
])
async def test_out_of_range_dates_get_422(gw: InProcessGateway, name: str, value: str) -> None:
    assert (await _beat(gw, A, "0.01")).status_code == 200
    for window in ("hour", "day", "week", "month"):
        resp = await gw.http.get(f"/v1/mesh/agents/{path(A)}/costs", params={name: value, "window": window})
        _error(resp, 422, "validation_error", name)


async def test_dates_at_the_edges_of_the_range_work(gw: InProcessGateway) -> None:
    assert (await _beat(gw, A, "0.01")).status_code == 200
    await gw.http.put(policy_path(A), json={"max_cost_per_day_usd": "1", "timezone": "America/New_York"})
    for params in ({"from": "1970-01-01T00:00:00Z"}, {"to": "3000-01-01T00:00:00Z"},
                   {"from": "1970-01-01T00:00:00Z", "to": "3000-01-01T00:00:00Z"}):
        for window in ("hour", "day", "week", "month"):
            resp = await gw.http.get(f"/v1/mesh/agents/{path(A)}/costs", params={**params, "window": window})
            assert resp.status_code == 200, (params, window, resp.text)


# -- key scopes ------------------------------------------------------------------------------------

async def test_a_bound_admin_key_acts_only_on_its_agent(gw: InProcessGateway) -> None:
    bound = await gw.create_key("acme", admin=True, agent=A)
    as_bound = {"x-api-key": bound}
    assert (await gw.http.put(policy_path(A), json={"max_cost_per_day_usd": "5"}, headers=as_bound)).status_code == 200
    assert (await gw.http.post(f"/v1/mesh/agents/{path(A)}/pause", headers=as_bound)).status_code == 200
    for method, url, body in [("PUT", policy_path(B), {"max_cost_per_day_usd": "5"}), ("DELETE", policy_path(A), None),
                              ("POST", f"/v1/mesh/agents/{path(B)}/pause", None),
                              ("POST", f"/v1/mesh/agents/{path(B)}/kill", None)]:
        if method == "DELETE":  # a policy on B first, by the org admin; then the bound key may not delete it
            url = policy_path(B)
            await gw.http.put(url, json={"max_cost_per_day_usd": "5"})
        resp = await gw.http.request(method, url, json=body, headers=as_bound)
        error = _error(resp, 403, "forbidden")
        assert A in error["message"]
    detail = (await gw.http.get(f"/v1/mesh/agents/{path(B)}")).json()
    assert detail["state"] == "active" and detail["policy"]["max_cost_per_day_usd"] == "5.00"


async def test_a_key_can_never_mint_a_wider_key(gw: InProcessGateway) -> None:
    bound = await gw.create_key("acme", admin=True, agent=A)
    org_admin = await gw.create_key("acme", admin=True)
    for body in ({"org": "acme", "admin": True}, {"org": "acme"}, {"org": "acme", "admin": True, "agent": B},
                 {"org": "globex", "admin": True, "agent": "agent://globex/p/x"}):
        _error(await gw.http.post("/v1/keys", json=body, headers={"x-api-key": bound}), 403, "forbidden")
    narrow = await gw.create_key("acme", admin=False, agent=A, key=bound)
    assert (await gw.http.post("/v1/keys", json={"org": "acme", "agent": A}, headers={"x-api-key": narrow})).status_code == 403
    _error(await gw.http.post("/v1/keys", json={"org": "globex"}, headers={"x-api-key": org_admin}), 403, "forbidden", "org")


async def test_keys_list_and_revoke_stay_inside_the_scope(gw: InProcessGateway) -> None:
    org_admin = await gw.create_key("acme", admin=True)
    bound = await gw.create_key("acme", admin=True, agent=A)
    bound_user = await gw.create_key("acme", agent=A, key=bound)
    other_user = await gw.create_key("acme", agent=B)
    globex = await gw.create_key("globex", admin=True)

    async def prefixes(key: str) -> set[str]:
        resp = await gw.http.get("/v1/keys", headers={"x-api-key": key})
        assert resp.status_code == 200, resp.text
        assert all("key" not in k and "key_hash" not in k for k in resp.json()["keys"])
        return {k["prefix"] for k in resp.json()["keys"]}

    pre = {k: k[:16] for k in (org_admin, bound, bound_user, other_user, globex)}
    assert await prefixes(bound) == {pre[bound], pre[bound_user]}
    assert await prefixes(org_admin) == {pre[org_admin], pre[bound], pre[bound_user], pre[other_user]}
    assert pre[globex] in await prefixes(gw.admin_key)
    _error(await gw.http.get("/v1/keys", headers={"x-api-key": bound_user}), 403, "forbidden")
    _error(await gw.http.delete(f"/v1/keys/{pre[other_user]}", headers={"x-api-key": bound}), 404, "not_found")
    _error(await gw.http.delete(f"/v1/keys/{pre[globex]}", headers={"x-api-key": org_admin}), 404, "not_found")
    revoked = await gw.http.delete(f"/v1/keys/{pre[bound_user]}", headers={"x-api-key": bound})
    assert revoked.status_code == 200 and revoked.json()["revoked"]["prefix"] == pre[bound_user]
    _error(await gw.http.get("/v1/mesh/agents", headers={"x-api-key": bound_user}), 401, "unauthorized")  # at once, here
    _error(await gw.http.delete(f"/v1/keys/{pre[bound_user]}", headers={"x-api-key": bound}), 404, "not_found")


async def test_every_admin_write_is_audited_with_the_key_prefix(gw: InProcessGateway) -> None:
    admin = await gw.create_key("acme", admin=True)
    as_admin = {"x-api-key": admin}
    await gw.http.put(policy_path(A), json={"max_cost_per_day_usd": "5"}, headers=as_admin)
    for action in ("pause", "resume", "kill"):
        await gw.http.post(f"/v1/mesh/agents/{path(A)}/{action}", headers=as_admin)
    await gw.http.delete(policy_path(A), headers=as_admin)
    made = await gw.create_key("acme", agent=A, key=admin)
    await gw.http.delete(f"/v1/keys/{made[:16]}", headers=as_admin)
    events = (await gw.http.get("/v1/mesh/events", params={"limit": 100}, headers=as_admin)).json()["events"]
    by_type = {e["type"]: e["data"] for e in reversed(events)}  # oldest first: the newest of each type wins
    for type_ in ("policy.updated", "agent.paused", "agent.resumed", "agent.killed", "policy.deleted", "key.created", "key.revoked"):
        assert by_type[type_]["by"] == admin[:16], (type_, by_type[type_])
    assert by_type["key.created"]["prefix"] == by_type["key.revoked"]["prefix"] == made[:16]
    assert made not in str(events)
    created = {e["data"]["prefix"]: e["data"]["by"] for e in events if e["type"] == "key.created"}
    assert created == {admin[:16]: gw.admin_key[:16], made[:16]: admin[:16]}  # the bootstrap key made the org admin key
