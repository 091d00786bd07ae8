"""``axme-meter demo`` end to end: real gateway process, simulator, policy, block, summary.

Runs the command a user runs (small budget, high speed) in its own process and
checks the JSON summary it writes. No timing assertions: only what happened.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("axme_meter.cli._gateway") is None or importlib.util.find_spec("axme_meter.gateway") is None,
    reason="the embedded gateway (axme-meter gateway) is not in this tree yet",
)


def run_demo(tmp_path: Path, *args: str, extra_env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    out = tmp_path / "summary.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AXME_", "OPENAI_"))}
    env["AXME_METER_SPOOL_DIR"] = str(tmp_path / "spool")
    env.update(extra_env or {})
    done = subprocess.run(
        [sys.executable, "-m", "axme_meter", "demo", "--json", str(out), *args],
        env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,  # no terminal: never waits
    )
    summary = json.loads(out.read_text()) if out.exists() else {}
    return done, summary


def test_demo_blocks_the_runaway_loop_and_summarises(tmp_path: Path) -> None:
    done, summary = run_demo(tmp_path, "--budget", "0.25", "--speed", "25", "--max-seconds", "120")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert summary["blocked"] is True
    assert summary["agent"] == "agent://demo/production/research-agent"
    assert "BudgetExceeded" not in (summary["stop_message"] or "")  # the message is the policy's, not a traceback
    assert "max_cost_per_day_usd" in (summary["stop_message"] or "")
    budget = Decimal(summary["budget_usd"])  # type: ignore[arg-type]
    recorded = Decimal(summary["gateway_spent_usd"])  # type: ignore[arg-type]
    local = Decimal(summary["local_spent_usd"])  # type: ignore[arg-type]
    assert recorded == local  # everything metered reached the gateway, exactly once
    research_calls = summary["research_calls"]
    assert isinstance(research_calls, int) and research_calls > 10
    # The loop is sequential (one call in flight): with leases, at most that call lands past the limit.
    assert summary["overshoot_calls"] <= 1
    assert recorded <= budget + local / research_calls * 2
    assert summary["triage_after_block_ok"] is True
    assert summary["upstream_requests"] == research_calls + summary["triage_calls"]  # type: ignore[operator]
    assert str(summary["dashboard_url"]).endswith("/dashboard")
    assert "summary" in done.stdout and "dashboard" in done.stdout
    # the gateway stopped with the demo: its URL is not offered as if it were live, --keep is
    assert summary["gateway_after"] == "stopped" and summary["admin_key"] is None
    closing = done.stdout.rsplit("summary", 1)[1]
    assert str(summary["dashboard_url"]) not in closing and "axme-meter demo --keep" in " ".join(closing.split())
    with pytest.raises(httpx.HTTPError):
        httpx.get(str(summary["dashboard_url"]), timeout=5)


def test_loop_policy_stops_the_runaway_long_before_the_money_policy(tmp_path: Path) -> None:
    """``--loop-policy``: the runaway re-sends the same research prompts on every pass, so the loop detector
    (3 identical requests an hour) stops it on its fourth pass, at a small part of the $2/day budget."""
    done, summary = run_demo(tmp_path, "--loop-policy", "--speed", "25", "--max-seconds", "120")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert summary["blocked"] is True and summary["loop_limit"] == 3
    assert summary["stopped_by"] == "max_identical_requests_per_hour"
    assert "max_identical_requests_per_hour" in str(summary["stop_message"])
    budget = Decimal(summary["budget_usd"])  # type: ignore[arg-type]
    at_stop = Decimal(summary["spent_when_stopped_usd"])  # type: ignore[arg-type]
    recorded = Decimal(summary["gateway_spent_usd"])  # type: ignore[arg-type]
    assert budget == 2 and 0 < at_stop == recorded < budget / 4  # far below the money limit, all of it recorded
    # Three full passes over the eight tickets (two research-agent calls each), then the first repeat is refused.
    assert summary["research_calls"] == 3 * 8 * 2
    assert summary["upstream_requests"] == summary["research_calls"] + summary["triage_calls"]  # the refused one never went out
    assert summary["triage_after_block_ok"] is True
    closing = " ".join(done.stdout.rsplit("summary", 1)[1].split())
    assert "stopped by max_identical_requests_per_hour" in closing


def test_demo_rejects_bad_flags(tmp_path: Path) -> None:
    done, _ = run_demo(tmp_path, "--budget", "-1")
    assert done.returncode == 2 and "positive amount" in done.stderr


def test_real_mode_uses_the_openai_settings_from_the_environment(tmp_path: Path) -> None:
    """--real talks to whatever OPENAI_BASE_URL says; here that is a simulator, so no money and no network."""
    from axme_meter.demo._simulator import Simulator, SimulatorConfig

    with Simulator(SimulatorConfig(seed=5)) as sim:
        env = {"OPENAI_BASE_URL": sim.base_url, "OPENAI_API_KEY": "sk-not-real"}
        done, summary = run_demo(tmp_path, "--real", "--budget", "0.05", "--max-seconds", "120", extra_env=env)
        served = sim.stats
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert summary["blocked"] is True and summary["budget_usd"] == "0.05"
    assert summary["upstream_requests"] is None  # the demo did not start its own simulator
    assert served.requests == summary["research_calls"] + summary["triage_calls"]  # type: ignore[operator]
    assert served.billed_completion_tokens <= 64 * served.requests  # --real caps max_tokens to keep a real bill small


def test_real_mode_without_a_key_says_so(tmp_path: Path) -> None:
    done, _ = run_demo(tmp_path, "--real")
    assert done.returncode != 0 and "OPENAI_API_KEY" in done.stderr


def test_keep_leaves_the_gateway_running_and_prints_the_key_to_log_in_with(tmp_path: Path) -> None:
    done, summary = run_demo(tmp_path, "--budget", "0.1", "--speed", "25", "--max-seconds", "120", "--keep")
    pid = summary.get("gateway_pid")
    try:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert summary["gateway_after"] == "kept" and isinstance(pid, int)
        key, url = str(summary["admin_key"]), str(summary["dashboard_url"])
        closing = " ".join(done.stdout.rsplit("summary", 1)[1].split())
        assert key in closing and url in closing and f"kill {pid}" in closing
        with httpx.Client(base_url=str(summary["gateway_url"]), timeout=10) as http:  # alive, and the key works
            listed = http.get("/v1/mesh/agents", headers={"x-api-key": key})
            assert listed.status_code == 200 and summary["agent"] in [a["address"] for a in listed.json()["agents"]]
            login = http.get("/dashboard/login")
            token = login.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            assert http.post("/dashboard/login", data={"api_key": key, "csrf": token}).status_code == 303
    finally:
        if isinstance(pid, int):
            os.kill(pid, signal.SIGTERM)  # the gateway this test started
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        work_dir = Path(str(summary.get("gateway_db") or "/nonexistent/x/y")).parents[1]
        if work_dir.name.startswith("axme-demo-"):  # the demo's own temp dir, kept with the gateway
            shutil.rmtree(work_dir, ignore_errors=True)


def _read_until(fd: int, needle: bytes, deadline: float, seen: bytearray) -> bool:
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the other side closed
                return needle in seen
            if not chunk:
                return needle in seen
            seen.extend(chunk)
            if needle in seen:
                return True
    return False


def test_in_a_terminal_the_demo_waits_for_enter_with_a_live_dashboard(tmp_path: Path) -> None:
    """Run in a pseudo-terminal, the demo ends with 'press Enter to stop the gateway', and until then the
    dashboard it names answers; Enter stops it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AXME_", "OPENAI_"))}
    env.update(AXME_METER_SPOOL_DIR=str(tmp_path / "spool"), COLUMNS="140", LINES="50", TERM="xterm")
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "axme_meter", "demo", "--budget", "0.1", "--speed", "25",
                             "--max-seconds", "120"], stdin=child_fd, stdout=child_fd, stderr=child_fd, env=env,
                            start_new_session=True)
    os.close(child_fd)
    seen = bytearray()
    try:
        assert _read_until(main_fd, b"press Enter to stop the gateway", time.monotonic() + 240, seen), seen[-3000:].decode(errors="replace")
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\]8;[^\x1b]*\x1b\\", "", seen.decode(errors="replace"))
        url = re.findall(r"http://127\.0\.0\.1:\d+/dashboard", text)[-1]
        key = re.search(r"admin key (axme_\S+)", text)
        assert key, text[-2000:]
        assert httpx.get(url, timeout=10).status_code in (200, 303)  # live while the demo waits
        os.write(main_fd, b"\n")
        assert proc.wait(timeout=60) == 0
        with pytest.raises(httpx.HTTPError):
            httpx.get(url, timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(main_fd)
