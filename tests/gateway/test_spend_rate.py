"""Spend-rate anomaly alerts through two real gateway replicas on one database, with the gateway's test clock.

A week of normal spend ($0.06 an hour) builds the baseline; then the agent suddenly spends 10× as fast
for two hours: exactly one alert per hour arrives (however many heartbeats, whichever replica takes them),
none in the first five minutes of an hour, and none at the normal rate before or after.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any



from support.gateway_helpers import entry, policy_path, send
from support.gateway_process import GatewayProcess
from support.polling import wait_for
from support.receivers import HTTPReceiver

AGENT = "agent://acme/prod/ticket-bot"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def _at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rate_events(http: Any) -> list[dict[str, Any]]:
    return list(http.get("/v1/mesh/events", params={"type": "alert.spend_rate", "limit": 1000}).json()["events"])


def test_a_sudden_10x_rate_alerts_once_per_hour_and_the_normal_rate_never(tmp_path: Path, db_url: str) -> None:
    clock = tmp_path / "clock.txt"
    start = NOW - timedelta(days=7)
    clock.write_text(_at(start))
    env = {"AXME_GATEWAY_WEBHOOK_ALLOW": "127.0.0.1", "AXME_GATEWAY_ALERT_RETRIES": "1"}
    with HTTPReceiver() as hooks, \
            GatewayProcess(tmp_path / "a", db_url=db_url, clock_file=clock, env=env) as one, \
            GatewayProcess(tmp_path / "b", db_url=db_url, clock_file=clock, env=env) as two, \
            one.client() as a, two.client() as b:
        policy = {"max_cost_per_month_usd": "1000", "alert_on_spend_rate_multiple": "3", "alert_thresholds": [1.0],
                  "notify": {"webhook": hooks.url("/rate"), "slack_webhook": hooks.url("/slack")}}
        stored = a.put(policy_path(AGENT), json=policy)
        assert stored.status_code == 200 and stored.json()["alert_on_spend_rate_multiple"] == "3"

        for hour in range(7 * 24):  # the baseline: $0.06 in each hour of the past week, at half past
            one.set_clock(_at(start + timedelta(hours=hour, minutes=30)))
            assert send(a if hour % 2 else b, entry(AGENT, "0.06")).status_code == 200
        assert _rate_events(a) == []

        for minute in range(120):  # 12:00-13:59: $0.01 a minute, $0.60 an hour, 10x the baseline
            moment = NOW + timedelta(minutes=minute)
            one.set_clock(_at(moment))
            assert send(a if minute % 2 else b, entry(AGENT, "0.01")).status_code == 200
            if minute % 60 == 4:  # 4 minutes in: too early to project, however fast
                assert len(_rate_events(a)) == minute // 60
        for minute in range(60):  # 14:00-14:59: back to normal ($0.001 a minute)
            one.set_clock(_at(NOW + timedelta(hours=2, minutes=minute)))
            assert send(b, entry(AGENT, "0.001")).status_code == 200

        alerts = _rate_events(b)
        assert sorted(e["data"]["hour_start"] for e in alerts) == ["2026-11-28T12:00:00Z", "2026-11-28T13:00:00Z"]
        first = min(alerts, key=lambda e: e["id"])["data"]
        assert first["baseline"] == "0.06" and first["multiple"] == "3" and first["elapsed_seconds"] == 300
        assert first["projected"] == "0.72" and first["spent"] == "0.06"  # 12:00..12:05: six calls
        posts = wait_for(lambda: len(hooks.posts("/rate")) >= 2 and hooks.posts("/rate"), "two webhook deliveries")
        assert all(p["type"] == "spend_rate.alert" for p in posts)
        slack = wait_for(lambda: len(hooks.posts("/slack")) >= 2 and hooks.posts("/slack"), "two Slack messages")
        assert all("spending fast" in m["text"] and "x its usual $0.06 per hour (alert above 3x)" in m["text"] for m in slack), slack
        wait_for(lambda: len(a.get("/v1/mesh/events", params={"type": "alert.sent"}).json()["events"]) == 4, "alert.sent x4")
        assert len(hooks.posts("/rate")) == 2 and len(hooks.posts("/slack")) == 2


def test_the_multiple_is_validated(tmp_path: Path) -> None:
    with GatewayProcess(tmp_path) as gw, gw.client() as http:
        for bad in ("1", "0.5", "-2", "abc", "1e3", True, "1001"):
            resp = http.put(policy_path(AGENT), json={"max_cost_per_day_usd": "1", "alert_on_spend_rate_multiple": bad})
            assert resp.status_code == 422, bad
            error = resp.json()["error"]
            assert error["details"]["field"] == "alert_on_spend_rate_multiple" and "greater than 1" in error["message"]
        ok = http.put(policy_path(AGENT), json={"max_cost_per_day_usd": "1", "alert_on_spend_rate_multiple": 2.5})
        assert ok.status_code == 200 and ok.json()["alert_on_spend_rate_multiple"] == "2.5"
        assert http.get(policy_path(AGENT)).json()["alert_on_spend_rate_multiple"] == "2.5"
