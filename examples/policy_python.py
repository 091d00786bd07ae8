"""Set and read a cost policy from Python, with plain httpx (no SDK needed).

Needs ``AXME_GATEWAY_URL`` and an admin ``AXME_API_KEY``. The agent is addressed by its
full address, percent-encoded, so the policy can exist before the agent first runs.
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import quote

import httpx

AGENT = sys.argv[1] if len(sys.argv) > 1 else "agent://acme/production/research-agent"

if __name__ == "__main__":
    gateway, key = os.environ["AXME_GATEWAY_URL"], os.environ["AXME_API_KEY"]
    url = f"{gateway.rstrip('/')}/v1/mesh/agents/{quote(AGENT, safe='')}/policies/cost"
    with httpx.Client(headers={"x-api-key": key}, timeout=10) as http:
        put = http.put(url, json={"max_cost_per_day_usd": "50.00", "action_on_breach": "block",
                                  "alert_thresholds": [0.5, 0.8, 1.0]})
        put.raise_for_status()
        got = http.get(url)
        got.raise_for_status()
    print(json.dumps(got.json(), indent=2, sort_keys=True))
