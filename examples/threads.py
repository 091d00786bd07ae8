"""Thread pools: ``axme_meter.bind`` carries the agent and intent into worker threads.

Threads do not inherit contextvars. Wrap the function where the work is handed
over, and it runs under the agent and intent that were current at that point.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import axme_meter

client = axme_meter.OpenAI()


def lookup(source: str) -> str:
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"Search {source}"}])
    return reply.choices[0].message.content or ""


if __name__ == "__main__":
    with axme_meter.agent("agent://acme/production/research-agent"), ThreadPoolExecutor(max_workers=4) as pool:
        for ticket_id in ("T-4711", "T-4712"):
            with axme_meter.intent(f"int_{ticket_id.lower()}", ticket=ticket_id):
                work = axme_meter.bind(lookup)  # freezes this agent and intent
                list(pool.map(work, ["wiki", "billing", "crm", "status-page"]))
    for intent, totals in sorted(axme_meter.spend().by_intent.items(), key=lambda kv: str(kv[0])):
        print(f"{intent}: {totals.calls} calls, ${totals.cost_usd}")
