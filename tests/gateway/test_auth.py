"""Auth and isolation: keys are required, org keys see and write only their org, nothing leaks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import unquote

import httpx
import pytest

from support.gateway_helpers import entry, path, policy_path, send
from support.gateway_process import GatewayProcess

ACME = "agent://acme/production/secret-agent"
GLOBEX = "agent://globex/production/their-agent"


@pytest.fixture(scope="module")
def world(gateway: GatewayProcess) -> Iterator[dict[str, str]]:
    """Two orgs with data: keys for each (plain, admin, bound) and the globex agent's id and intent."""
    keys = {
        "acme": gateway.create_key("acme"),
        "acme_admin": gateway.create_key("acme", admin=True),
        "acme_bound": gateway.create_key("acme", agent=ACME),
        "globex": gateway.create_key("globex"),
    }
    with gateway.client() as http:
        resp = send(http, entry(ACME, "1", intent="int_acme_secret"), entry(GLOBEX, "2", intent="int_globex_secret"))
        assert resp.status_code == 200
        keys["globex_id"] = resp.json()["agents"][GLOBEX]["address_id"]
        http.put(policy_path(GLOBEX), json={"max_cost_per_day_usd": "100"})
    yield keys


def test_missing_or_wrong_key_is_401(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url) as http:
        for method, url in [("GET", "/v1/mesh/agents"), ("POST", "/v1/mesh/heartbeat"), ("GET", "/v1/mesh/events")]:
            resp = http.request(method, url)
            assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthorized"
            resp = http.request(method, url, headers={"x-api-key": "axme_sa_nope"})
            assert resp.status_code == 401 and "invalid" in resp.json()["error"]["message"]
        assert http.get("/healthz").status_code == 200  # health needs no key


def _cross_org_attempts(world: dict[str, str]) -> list[tuple[str, str, dict | None]]:
    gid = world["globex_id"]
    enc = path(GLOBEX)
    attempts: list[tuple[str, str, dict | None]] = []
    for ref in (gid, enc):
        attempts += [
            ("GET", f"/v1/mesh/agents/{ref}", None),
            ("GET", f"/v1/mesh/agents/{ref}/costs", None),
            ("GET", f"/v1/mesh/agents/{ref}/policies/cost", None),
            ("PUT", f"/v1/mesh/agents/{ref}/policies/cost", {"max_cost_per_day_usd": "1"}),
            ("DELETE", f"/v1/mesh/agents/{ref}/policies/cost", None),
            ("POST", f"/v1/mesh/agents/{ref}/pause", None),
            ("POST", f"/v1/mesh/agents/{ref}/resume", None),
            ("POST", f"/v1/mesh/agents/{ref}/kill", None),
        ]
    attempts += [
        ("GET", "/v1/mesh/intents/int_globex_secret", None),
        ("GET", f"/v1/mesh/events?agent={enc}", None),
        ("POST", "/v1/mesh/heartbeat", entry(GLOBEX, "1")),
        ("POST", "/v1/mesh/intents", {"agent": GLOBEX}),
        ("POST", "/v1/keys", {"org": "globex", "admin": True}),
    ]
    return attempts


@pytest.mark.parametrize("who", ["acme", "acme_admin", "acme_bound"])
def test_every_cross_org_attempt_is_refused(gateway: GatewayProcess, world: dict[str, str], who: str) -> None:
    with gateway.client(world[who]) as http:
        for method, url, body in _cross_org_attempts(world):
            resp = http.request(method, url, json=body) if body is not None else http.request(method, url)
            assert resp.status_code in (403, 404), (who, method, url, resp.status_code, resp.text)
            assert "error" in resp.json()
            asked = unquote(url) + json.dumps(body)
            for secret in (world["globex_id"], "int_globex_secret", '"2.00"', '"100.00"', GLOBEX):
                assert secret in asked or secret not in resp.text, (method, url, resp.text)
    with gateway.client() as http:  # and nothing changed on the globex side
        detail = http.get(f"/v1/mesh/agents/{world['globex_id']}").json()
        assert detail["state"] == "active" and detail["cost_today"] == "2.00"
        assert http.get(policy_path(GLOBEX)).json()["max_cost_per_day_usd"] == "100.00"


@pytest.mark.parametrize("who", ["acme", "acme_admin", "acme_bound"])
def test_a_cross_org_entry_in_a_batch_is_refused_alone(gateway: GatewayProcess, world: dict[str, str], who: str) -> None:
    """A batch is answered per entry: the foreign entry is ``forbidden``, the key's own entry is recorded."""
    mine, theirs = entry(ACME, "0.25"), entry(GLOBEX, "1")
    with gateway.client(world[who]) as http:
        resp = send(http, mine, theirs, entry(GLOBEX, "1"))
        assert resp.status_code == 200, resp.text
        results = resp.json()["results"]
        assert [r["status"] for r in results] == ["recorded", "error", "error"]
        assert results[1]["id"] == theirs["id"] and results[1]["error"]["code"] == "forbidden"
        assert results[1]["error"]["field"] == "heartbeats.1.agent"
        assert list(resp.json()["agents"]) == [ACME]  # nothing about the other org comes back
        assert "2.00" not in resp.text and world["globex_id"] not in resp.text
    with gateway.client() as http:
        assert http.get(f"/v1/mesh/agents/{world['globex_id']}").json()["cost_today"] == "2.00"


@pytest.mark.parametrize("who", ["acme", "acme_admin", "acme_bound"])
def test_lists_never_show_another_org(gateway: GatewayProcess, world: dict[str, str], who: str) -> None:
    with gateway.client(world[who]) as http:
        agents = http.get("/v1/mesh/agents").json()
        assert agents["agents"] and all(a["address"].startswith("agent://acme/") for a in agents["agents"])
        events = http.get("/v1/mesh/events", params={"limit": 1000}).json()["events"]
        assert events and all((e["agent"] or "").startswith("agent://acme/") for e in events if e["agent"] is not None)
        assert all(e["type"].startswith("key.") and e["data"]["org"] == "acme" for e in events if e["agent"] is None)
        assert "globex" not in http.get("/v1/mesh/agents").text + http.get("/v1/mesh/events").text


def test_org_keys_work_within_their_org(gateway: GatewayProcess, world: dict[str, str]) -> None:
    with gateway.client(world["acme"]) as http:
        assert send(http, entry(ACME, "0.5")).status_code == 200
        assert http.get(f"/v1/mesh/agents/{path(ACME)}").status_code == 200
        assert http.get("/v1/mesh/intents/int_acme_secret").status_code == 200
        assert http.put(policy_path(ACME), json={"max_cost_per_day_usd": "9"}).status_code == 403  # not admin
    with gateway.client(world["acme_admin"]) as http:
        assert http.put(policy_path(ACME), json={"max_cost_per_day_usd": "9"}).status_code == 200
        assert http.post("/v1/keys", json={"org": "acme"}).status_code == 201
        assert http.delete(policy_path(ACME)).status_code == 200
    with gateway.client(world["acme_bound"]) as http:
        assert http.post("/v1/mesh/heartbeat", json={"metrics": {"cost_usd": "0.1"}}).status_code == 200
        assert http.post("/v1/mesh/heartbeat", json=entry("agent://acme/production/someone-else", "1")).status_code == 403
        in_batch = send(http, entry("agent://acme/production/someone-else", "1")).json()["results"][0]
        assert in_batch["status"] == "error" and in_batch["error"]["code"] == "forbidden"
