"""End to end: ``axme_meter.OpenAI`` + the heartbeat sender + this gateway + a cost policy.

The agent is blocked by the gateway, ``BudgetExceeded`` is raised, and the OpenAI mock sees no further request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.gateway_helpers import path, policy_path
from support.gateway_process import GatewayProcess

HERE = Path(__file__).resolve().parent
AGENT = "agent://acme/production/e2e-agent"


def test_gateway_policy_stops_the_openai_client(gateway: GatewayProcess, tmp_path: Path) -> None:
    with gateway.client() as http:
        # gpt-4o-2024-08-06 at 1000 prompt + 500 completion tokens costs $0.0075 per call: blocked after 4 calls
        assert http.put(policy_path(AGENT), json={"max_cost_per_day_usd": "0.03"}).status_code == 200
    key = gateway.create_key("acme")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AXME_", "OPENAI_"))}
    env.update(AXME_GATEWAY_URL=gateway.url, AXME_API_KEY=key, AXME_AGENT=AGENT, AXME_METER_SPOOL_DIR=str(tmp_path / "spool"))
    done = subprocess.run([sys.executable, str(HERE / "e2e_client.py"), "50"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["blocked_at"] == 4, report
    assert "max_cost_per_day_usd" in report["error"] or "budget" in report["error"].lower()
    assert report["mock_after"] == report["mock_at_block"] == 4  # no request reached OpenAI once blocked
    assert report["refused_after"] == 5
    with gateway.client() as http:
        detail = http.get(f"/v1/mesh/agents/{path(AGENT)}").json()
        assert detail["state"] == "blocked" and detail["cost_today"] == "0.03"
