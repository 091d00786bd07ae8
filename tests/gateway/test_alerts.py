"""Alerts through real receivers: SMTP (aiosmtpd), Slack-style and generic webhooks; each fires once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.gateway_helpers import entry, policy_path, send
from support.gateway_process import GatewayProcess
from support.polling import wait_for
from support.receivers import HTTPReceiver, SMTPReceiver

AGENT = "agent://acme/production/alerting"
#: the receivers listen on loopback, which webhooks may not reach unless allowed
LOOPBACK_HOOKS = {"AXME_GATEWAY_WEBHOOK_ALLOW": "127.0.0.1"}


@pytest.fixture
def receivers() -> Iterator[tuple[SMTPReceiver, HTTPReceiver]]:
    with SMTPReceiver() as smtp, HTTPReceiver(failing=("/broken",)) as http:
        yield smtp, http


def _events(http: Any, type_: str) -> list[dict[str, Any]]:
    return [e for e in http.get("/v1/mesh/events", params={"agent": AGENT, "limit": 1000}).json()["events"] if e["type"] == type_]


def test_thresholds_fire_once_on_every_channel(tmp_path: Path, db_url: str, receivers: tuple[SMTPReceiver, HTTPReceiver]) -> None:
    smtp, hooks = receivers
    gw = GatewayProcess(tmp_path, db_url=db_url, clock="2026-11-28T12:00:00Z",
                        env={"AXME_GATEWAY_SMTP_URL": smtp.url, "AXME_GATEWAY_ALERT_BACKOFF": "0.05", **LOOPBACK_HOOKS})
    with gw, gw.client() as http:
        http.put(policy_path(AGENT), json={
            "max_cost_per_day_usd": "10", "alert_thresholds": [0.5, 0.8, 1.0],
            "notify": {"email": ["ops@example.com"], "slack_webhook": hooks.url("/slack"), "webhook": hooks.url("/hook")}})
        send(http, entry(AGENT, "4"))  # 40%: nothing
        send(http, entry(AGENT, "1.5"))  # 55%: 0.5
        send(http, entry(AGENT, "0.1"))  # still 56%: nothing new
        send(http, entry(AGENT, "5"))  # 106%: 0.8 and 1 together
        send(http, entry(AGENT, "1"))  # nothing new
        wait_for(lambda: len(_events(http, "alert.sent")) >= 9, "9 deliveries (3 thresholds x 3 channels)")
        hook = sorted(hooks.posts("/hook"), key=lambda b: b["threshold"])
        assert [b["threshold"] for b in hook] == ["0.5", "0.8", "1"]
        assert hook[0]["agent"] == AGENT and hook[0]["policy"] == "max_cost_per_day_usd" and hook[0]["limit"] == "10.00"
        assert hook[0]["spent"] == "5.50" and hook[0]["resets_at"] == "2026-11-29T00:00:00Z"
        assert len(hooks.posts("/slack")) == 3 and all("text" in b for b in hooks.posts("/slack"))
        assert len(smtp.messages) == 3 and all(m["to"] == ["ops@example.com"] for m in smtp.messages)
        assert any("50%" in m["subject"] for m in smtp.messages)
        assert len(_events(http, "alert.triggered")) == 3
        gw.set_clock("2026-11-29T00:30:00Z")  # next day: the thresholds may fire again, once
        send(http, entry(AGENT, "6"))
        wait_for(lambda: len(hooks.posts("/hook")) == 4, "next window's alert")
        time.sleep(0.5)
        assert len(hooks.posts("/hook")) == 4 and len(smtp.messages) == 4


def test_failing_channel_is_retried_recorded_and_never_blocks(tmp_path: Path, receivers: tuple[SMTPReceiver, HTTPReceiver]) -> None:
    smtp, hooks = receivers
    gw = GatewayProcess(tmp_path, clock="2026-11-28T12:00:00Z",
                        env={"AXME_GATEWAY_SMTP_URL": "smtp://127.0.0.1:9", "AXME_GATEWAY_ALERT_RETRIES": "3",
                             "AXME_GATEWAY_ALERT_BACKOFF": "0.05", **LOOPBACK_HOOKS})
    with gw, gw.client() as http:
        http.put(policy_path(AGENT), json={"max_cost_per_day_usd": "1", "alert_thresholds": [1.0],
                                           "notify": {"email": ["x@example.com"], "webhook": hooks.url("/broken")}})
        assert send(http, entry(AGENT, "2")).status_code == 429  # ingest answered; delivery is in the background
        failed = wait_for(lambda: len(_events(http, "alert.failed")) == 2 and _events(http, "alert.failed"), "two failures")
        assert sorted(e["data"]["channel"] for e in failed) == ["email", "webhook"]
        assert all(e["data"]["attempts"] == 3 and e["data"]["error"] for e in failed)
        assert len(hooks.posts("/broken")) == 3
        assert send(http, entry(AGENT, "0")).status_code == 429  # the gateway keeps serving
