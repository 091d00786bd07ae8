"""Handle ``BudgetExceeded`` in an agent loop: stop cleanly, save state, exit non-zero.

``BudgetExceeded`` is raised *before* the request is sent, so nothing more is spent.
It is an ``openai.OpenAIError`` (the SDK never retries it) but not an ``APIError``,
so a generic retry around API errors does not spin on it. Catch it at the loop.

With ``AXME_GATEWAY_URL`` set, the gateway's cost policy decides. Without one, this
example sets a local fail-safe limit (``--local-limit USD``) so it runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import openai

import axme_meter

EXIT_BUDGET = 3

client = axme_meter.OpenAI()


def research(ticket: str) -> str:
    for attempt in range(3):  # a typical retry loop: BudgetExceeded is not an APIError, so it escapes it
        try:
            reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": ticket}])
            return reply.choices[0].message.content or ""
        except openai.APIError:
            if attempt == 2:
                raise
    return ""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", type=Path, default=Path("agent-state.json"))
    parser.add_argument("--local-limit", default="0.05", help="USD/day when no gateway is configured")
    parser.add_argument("--max-rounds", type=int, default=10_000)
    args = parser.parse_args()
    state = json.loads(args.state.read_text()) if args.state.exists() else {"done": []}
    if not os.environ.get("AXME_GATEWAY_URL"):
        axme_meter.configure(local_limits={"max_cost_per_day_usd": args.local_limit})
    tickets = [f"T-{n}" for n in range(4711, 4719)]
    try:
        with axme_meter.agent("agent://acme/production/research-agent"):
            for _ in range(args.max_rounds):
                for ticket in tickets:
                    research(ticket)
                    state["done"].append(ticket)
    except axme_meter.BudgetExceeded as exc:
        state["stopped"] = {"reason": exc.message, "policy": exc.policy, "limit": str(exc.limit),
                            "spent": str(exc.spent), "resets_at": exc.resets_at.isoformat() if exc.resets_at else None}
        args.state.write_text(json.dumps(state, indent=2))
        print(f"budget exceeded, state saved to {args.state}: {exc.message}", file=sys.stderr)
        return EXIT_BUDGET
    args.state.write_text(json.dumps(state, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
