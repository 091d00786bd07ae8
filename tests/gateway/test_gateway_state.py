"""State a gateway keeps in memory belongs to that gateway: two apps in one process (as in-process tests
run them) never share it. Here: the alert claims a gateway has seen taken (``Gateway.claims``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.inprocess import inprocess_gateway

AGENT = "agent://acme/prod/twice"
NOW = "2026-11-28T12:00:00Z"


def _events(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == type_]


async def test_two_gateways_in_one_process_claim_their_own_alerts(tmp_path: Path) -> None:
    """The same agent, policy and window in two gateways with their own databases: each must claim its own
    breach and thresholds, though the other has already claimed the same (agent, policy, window, threshold)."""
    seen, caches = [], []
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        async with inprocess_gateway(tmp_path / name, clock=NOW) as gw:
            put = await gw.http.put(f"/v1/mesh/agents/{AGENT.replace('/', '%2F')}/policies/cost",
                                    json={"max_cost_per_day_usd": "1.00", "alert_thresholds": [0.5, 1.0]})
            assert put.status_code == 200, put.text
            sent = await gw.http.post("/v1/mesh/heartbeat", json={"heartbeats": [
                {"id": "hb_twice_1_1", "agent": AGENT, "metrics": {"cost_usd": "1.50", "llm_calls": 1}}]})
            assert sent.status_code == 429 and sent.json()["error"]["code"] == "budget_exceeded"
            events = (await gw.http.get("/v1/mesh/events", params={"agent": AGENT})).json()["events"]
            seen.append(events)
            assert len(_events(events, "agent.blocked")) == 1, f"{name}: {events}"
            assert sorted(e["data"]["threshold"] for e in _events(events, "alert.triggered")) == ["0.5", "1"], name
            # and within one gateway a claim is still made once: the same breach again adds nothing
            again = await gw.http.post("/v1/mesh/heartbeat", json={"heartbeats": [
                {"id": "hb_twice_1_2", "agent": AGENT, "metrics": {"cost_usd": "0.10", "llm_calls": 1}}]})
            assert again.status_code == 429
            after = (await gw.http.get("/v1/mesh/events", params={"agent": AGENT})).json()["events"]
            assert len(_events(after, "agent.blocked")) == 1 and len(_events(after, "alert.triggered")) == 2
            claims = gw.app.state.gateway.claims  # type: ignore[attr-defined]
            assert len(claims) == 3  # breach + two thresholds, remembered by this gateway after its commit
            caches.append(claims)
    assert seen[0] and seen[1] and caches[0] is not caches[1]
