"""Loop detection through the public API: real client processes, a real gateway process, mocked OpenAI HTTP.

``max_identical_requests_per_hour`` stops the request that repeats itself too often before it is sent,
counts repeats across processes (the gateway sums what each heartbeat reports), and applies the
policy's ``action_on_breach`` on the gateway: ``block`` blocks the agent, ``notify`` alerts once an hour,
``pause`` pauses it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("uvicorn", reason="needs the gateway extra")

from support.gateway_process import GatewayProcess  # noqa: E402
from support.polling import wait_for  # noqa: E402
from support.workers import worker_report  # noqa: E402
from support.receivers import HTTPReceiver  # noqa: E402

WORKER = str(Path(__file__).with_name("loop_worker.py"))
AGENT = "agent://acme/prod/looper"


def _now_iso(offset: float = 0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path / "gw", clock=_now_iso(), env={"AXME_GATEWAY_WEBHOOK_ALLOW": "127.0.0.1"})
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def _policy(gw: GatewayProcess, **fields: object) -> None:
    with gw.client() as http:
        resp = http.put(f"/v1/mesh/agents/{quote(AGENT, safe='')}/policies/cost", json=fields)
    assert resp.status_code == 200, resp.text


def _agent(gw: GatewayProcess) -> dict[str, Any]:
    with gw.client() as http:
        return http.get(f"/v1/mesh/agents/{quote(AGENT, safe='')}").json()


def _events(gw: GatewayProcess, kind: str) -> list[dict[str, Any]]:
    with gw.client() as http:
        events = http.get("/v1/mesh/events").json()["events"]
    return [e for e in events if e["type"] == kind]


def _env(gw: GatewayProcess, tmp_path: Path, name: str, interval: str = "0.2", go: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXME_")}
    env.update(AXME_GATEWAY_URL=gw.url, AXME_API_KEY=gw.admin_key, AXME_AGENT=AGENT,
               AXME_HEARTBEAT_INTERVAL=interval, AXME_METER_SPOOL_DIR=str(tmp_path / "spool" / name))
    if go is not None:
        env["LOOP_WORKER_GO"] = str(go)
    return env


def _start(env: dict[str, str], prompt: str, calls: int, gap: float = 0.0) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, WORKER, prompt, str(calls), str(gap)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _run(gw: GatewayProcess, tmp_path: Path, prompt: str, calls: int, name: str = "a") -> dict[str, Any]:
    return worker_report(_start(_env(gw, tmp_path, name), prompt, calls))


def test_block_stops_the_repeat_before_it_is_sent(gw: GatewayProcess, tmp_path: Path) -> None:
    _policy(gw, max_identical_requests_per_hour=5, action_on_breach="block")
    report = _run(gw, tmp_path, "summarise ticket T-1", 50)
    assert report["loop_policies"] == {AGENT: {"limit": 5, "action": "block"}}
    assert report["calls"] == 5 and report["refused"] == 1
    assert report["openai_requests"] == 5  # the sixth identical request never reached OpenAI
    assert report["policy"] == "max_identical_requests_per_hour"
    assert AGENT in report["message"] and "int_loop" in report["message"]
    detected = wait_for(lambda: _events(gw, "loop.detected"), "a loop.detected event")
    assert len(detected) == 1
    data = detected[0]["data"]
    assert (data["agent"], data["intent"], data["count"], data["limit"]) == (AGENT, "int_loop", 6, "5")
    assert _agent(gw)["state"] == "blocked"  # the gateway blocks the agent for the rest of the hour
    again = _run(gw, tmp_path, "distinct", 3, name="b")  # a new process of the blocked agent
    assert again["openai_requests"] == 0 and again["refused"] == 1


def test_different_prompts_are_not_stopped(gw: GatewayProcess, tmp_path: Path) -> None:
    _policy(gw, max_identical_requests_per_hour=2, action_on_breach="block")
    report = _run(gw, tmp_path, "distinct", 30)
    assert report == {**report, "calls": 30, "refused": 0, "openai_requests": 30}
    assert _agent(gw)["state"] == "active"
    assert not _events(gw, "loop.detected")


def test_processes_repeating_one_prompt_are_stopped_together(gw: GatewayProcess, tmp_path: Path) -> None:
    """Each process alone stays far under the limit; the fleet's count stops them all."""
    limit = 12
    _policy(gw, max_identical_requests_per_hour=limit, action_on_breach="block")
    go = tmp_path / "go"
    procs = [_start(_env(gw, tmp_path, f"p{i}", interval="0.1", go=go), "the same prompt", 100, gap=0.15) for i in range(3)]
    time.sleep(1.0)  # let them import and wait at the start line
    go.touch()
    reports = [worker_report(p) for p in procs]
    assert all(r["refused"] == 1 and r["policy"] == "max_identical_requests_per_hour" for r in reports), reports
    sent = sum(r["openai_requests"] for r in reports)
    assert all(r["openai_requests"] < limit for r in reports)  # no process reached the limit on its own
    # Counts travel with heartbeats (0.1 s) while the processes send every 0.15 s: a few calls may race past.
    assert limit <= sent <= limit + 3, reports
    assert _agent(gw)["state"] == "blocked"
    assert len(_events(gw, "loop.detected")) == 1


def test_notify_lets_it_through_and_alerts_once_an_hour(gw: GatewayProcess, tmp_path: Path) -> None:
    with HTTPReceiver() as hook:
        _policy(gw, max_identical_requests_per_hour=3, action_on_breach="notify", notify={"webhook": hook.url("/hook")})
        first = _run(gw, tmp_path, "same", 8)
        assert first == {**first, "calls": 8, "refused": 0, "openai_requests": 8}
        wait_for(lambda: hook.posts("/hook"), "the loop alert")
        second = _run(gw, tmp_path, "same", 5, name="b")  # still the same hour: more repeats, no second alert
        assert second["calls"] == 5
        wait_for(lambda: _events(gw, "alert.sent"), "alert.sent")
        alerts = hook.posts("/hook")
        assert len(alerts) == 1 and len(_events(gw, "alert.sent")) == 1, alerts
        assert alerts[0]["type"] == "loop.alert" and alerts[0]["policy"] == "max_identical_requests_per_hour"
        assert "int_loop" in alerts[0]["message"]
        assert _agent(gw)["state"] == "active"
        detected = _events(gw, "loop.detected")
        assert len(detected) == 1 and detected[0]["data"]["action"] == "notify"


def test_pause_pauses_the_agent(gw: GatewayProcess, tmp_path: Path) -> None:
    _policy(gw, max_identical_requests_per_hour=4, action_on_breach="pause")
    report = _run(gw, tmp_path, "again and again", 20)
    assert report["calls"] == 4 and report["refused"] == 1 and report["openai_requests"] == 4
    wait_for(lambda: _agent(gw)["state"] == "paused", "the agent paused")
    assert _events(gw, "agent.paused")[0]["data"]["policy"] == "max_identical_requests_per_hour"
    again = _run(gw, tmp_path, "distinct", 3, name="b")
    assert again["openai_requests"] == 0  # paused until an admin resumes it


@pytest.mark.parametrize("kind", ["variants", "responses", "embeddings"])
def test_the_fingerprint_is_the_content_not_the_flags(gw: GatewayProcess, tmp_path: Path, kind: str) -> None:
    """Streamed or not, other ``user`` / ``metadata`` / sampling: one request; responses and embeddings count too."""
    _policy(gw, max_identical_requests_per_hour=4, action_on_breach="block")
    report = _run(gw, tmp_path, kind, 20)
    assert report["calls"] == 4 and report["refused"] == 1 and report["openai_requests"] == 4, report


def test_without_the_field_nothing_is_fingerprinted(gw: GatewayProcess, tmp_path: Path) -> None:
    _policy(gw, max_cost_per_day_usd="100", action_on_breach="block")
    report = _run(gw, tmp_path, "same", 20)
    assert report["calls"] == 20 and report["refused"] == 0
    assert report["loop_policies"] == {}  # the client never fingerprinted a request
    body = _agent(gw)
    assert all(p["name"] != "max_identical_requests_per_hour" for p in body["policies"])
    import sqlite3

    with sqlite3.connect(gw.workdir / "gateway.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM axme_repeats").fetchone()[0] == 0
