"""Alert delivery through a real gateway process: a dead target delays nobody else; internal addresses are refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from support.gateway_helpers import entry, policy_path, send
from support.gateway_process import ROOT, GatewayProcess, free_port
from support.receivers import HangingReceiver, HTTPReceiver, TLSReceiver
from support.polling import wait_for

ACME = "agent://acme/production/stuck-hook"
GLOBEX = "agent://globex/production/healthy-hook"
MARKER = b"internal-answer-7f3e"


def _events(http: Any, type_: str, agent: str | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"type": type_, "limit": 1000}
    if agent:
        params["agent"] = agent
    return list(http.get("/v1/mesh/events", params=params).json()["events"])


def _policy(**notify: Any) -> dict[str, Any]:
    return {"max_cost_per_day_usd": "1", "alert_thresholds": [1.0], "action_on_breach": "notify", "notify": notify}


def test_a_hanging_target_delays_no_other_target_or_org(tmp_path: Path, db_url: str) -> None:
    """Structural, not timed: the live targets' alerts arrive while the hanging one's first attempt is still open
    (its timeout is 60 s), which a single delivery thread could never do."""
    env = {"AXME_GATEWAY_WEBHOOK_ALLOW": "127.0.0.1", "AXME_GATEWAY_ALERT_TIMEOUT": "60", "AXME_GATEWAY_ALERT_RETRIES": "1"}
    with HangingReceiver() as dead, HTTPReceiver() as live, \
            GatewayProcess(tmp_path, db_url=db_url, clock="2026-11-28T12:00:00Z", env=env) as gw, gw.client() as http:
        assert http.put(policy_path(ACME), json=_policy(webhook=dead.url("/dead"), slack_webhook=live.url("/acme-slack"))).status_code == 200
        assert http.put(policy_path(GLOBEX), json=_policy(webhook=live.url("/globex"))).status_code == 200
        assert send(http, entry(ACME, "2")).status_code == 200
        wait_for(dead.arrived.is_set, "the dead target to receive its request and hold it")
        started = time.monotonic()
        assert send(http, entry(GLOBEX, "2")).status_code == 200
        wait_for(lambda: live.posts("/globex") and live.posts("/acme-slack"), "the live targets' alerts")
        delay = time.monotonic() - started
        sent = wait_for(lambda: len(_events(http, "alert.sent")) == 2 and _events(http, "alert.sent"), "two alert.sent")
        assert not dead.released.is_set() and dead.count == 1
        assert _events(http, "alert.failed") == []  # the dead target's attempt is still open
        assert sorted(e["data"]["channel"] for e in sent) == ["slack", "webhook"]
        print(f"\nlive alert delivered {delay * 1000:.0f} ms after its heartbeat, while the dead target hung")


def test_internal_addresses_are_refused_without_connecting(tmp_path: Path) -> None:
    with HTTPReceiver(failing=("/fail",), answer=MARKER) as hooks:
        port = hooks.url("/").split(":")[2].split("/")[0]
        targets = {
            "agent://acme/prod/loopback": _policy(webhook=hooks.url("/fail"), slack_webhook=f"http://localhost:{port}/s"),
            "agent://acme/prod/metadata": _policy(webhook="http://169.254.169.254/latest/meta-data/iam"),
            "agent://acme/prod/private": _policy(webhook="http://10.0.0.1:8080/hook", slack_webhook="http://192.168.1.1/x"),
            "agent://acme/prod/v6": _policy(webhook=f"http://[::1]:{port}/fail", slack_webhook=f"http://[::ffff:127.0.0.1]:{port}/f"),
            "agent://acme/prod/zero": _policy(webhook=f"http://0.0.0.0:{port}/fail", slack_webhook="http://100.100.100.200/meta"),
        }
        with GatewayProcess(tmp_path, clock="2026-11-28T12:00:00Z", env={"AXME_GATEWAY_ALERT_BACKOFF": "0.05"}) as gw, \
                gw.client() as http:
            for agent, policy in targets.items():
                assert http.put(policy_path(agent), json=policy).status_code == 200
                assert send(http, entry(agent, "2")).status_code == 200
            failed = wait_for(lambda: len(_events(http, "alert.failed")) == 9 and _events(http, "alert.failed"), "9 refusals")
            assert hooks.requests == []  # nothing reached the loopback receiver
            for event in failed:
                assert event["data"]["attempts"] == 1 and event["data"]["error"].startswith("refused: "), event
                assert "AXME_GATEWAY_WEBHOOK_ALLOW" in event["data"]["error"]
            text = str(failed)
            assert MARKER.decode() not in text and "HTTP 5" not in text and "meta-data/iam" not in text
        # the same receiver, allowed by name and by CIDR: delivered, and its failure is only a status code
        allow = {"AXME_GATEWAY_WEBHOOK_ALLOW": "localhost, 127.0.0.0/8", "AXME_GATEWAY_ALERT_RETRIES": "2",
                 "AXME_GATEWAY_ALERT_BACKOFF": "0.05"}
        with GatewayProcess(tmp_path / "allowed", clock="2026-11-28T12:00:00Z", env=allow) as gw, gw.client() as http:
            agent = "agent://acme/prod/on-prem"
            http.put(policy_path(agent), json=_policy(webhook=hooks.url("/fail"), slack_webhook=f"http://localhost:{port}/ok"))
            send(http, entry(agent, "2"))
            sent = wait_for(lambda: _events(http, "alert.sent"), "the allowed slack alert")
            failed = wait_for(lambda: _events(http, "alert.failed"), "the allowed but failing webhook")
            assert sent[0]["data"]["channel"] == "slack" and hooks.posts("/ok")
            assert failed[0]["data"]["error"] == "DeliveryError: HTTP 500" and failed[0]["data"]["attempts"] == 2
            assert len(hooks.posts("/fail")) == 2


def test_a_malformed_allow_list_stops_the_gateway_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXME_")}
    env.update(PYTHONPATH=str(ROOT), AXME_GATEWAY_WEBHOOK_ALLOW="10.0.0.0/33")
    done = subprocess.run([sys.executable, "-m", "axme_meter", "gateway", "--port", str(free_port()), "--db",
                           f"sqlite:///{tmp_path / 'gw.sqlite3'}"], capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=60)
    assert done.returncode == 2 and "AXME_GATEWAY_WEBHOOK_ALLOW" in done.stderr and "10.0.0.0/33" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl binary to make a test certificate")
def test_https_webhooks_go_to_the_checked_address_with_the_certificate_verified_for_the_host_name(tmp_path: Path) -> None:
    with TLSReceiver(tmp_path) as tls:
        env = {"AXME_GATEWAY_WEBHOOK_ALLOW": "localhost", "SSL_CERT_FILE": str(tls.cafile), "AXME_GATEWAY_ALERT_RETRIES": "1"}
        with GatewayProcess(tmp_path / "gw", clock="2026-11-28T12:00:00Z", env=env) as gw, gw.client() as http:
            by_name, by_ip = "agent://acme/prod/tls-name", "agent://acme/prod/tls-ip"
            http.put(policy_path(by_name), json=_policy(webhook=f"https://localhost:{tls.port}/hook"))
            http.put(policy_path(by_ip), json=_policy(webhook=f"https://127.0.0.1:{tls.port}/hook"))
            send(http, entry(by_name, "2"), entry(by_ip, "2"))
            sent = wait_for(lambda: _events(http, "alert.sent", by_name), "the https alert")
            failed = wait_for(lambda: _events(http, "alert.failed", by_ip), "the refusal")
    assert sent[0]["data"]["target"] == f"https://localhost:{tls.port}/…hook"
    assert tls.seen == [(f"localhost:{tls.port}", "localhost")]  # pinned to the address, named for the certificate
    assert failed[0]["data"]["error"].startswith("refused: 127.0.0.1 is not a public address")  # the name opens no IP
