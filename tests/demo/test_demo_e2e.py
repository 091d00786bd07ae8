"""``axme-meter demo`` end to end: real gateway process, simulator, policy, block, summary.

Runs the command a user runs (small budget, high speed) in its own process and
checks the JSON summary it writes. No timing assertions: only what happened.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

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
        env=env, capture_output=True, text=True, timeout=300,
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
