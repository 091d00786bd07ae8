"""One intent per ticket: know what each unit of work cost, not just each agent.

``axme_meter.intent()`` is a context manager (and a decorator). Labels travel with
the intent to the gateway; with no id, one is minted (``int_…``). When a gateway is
configured, entering an intent registers it, and a blocked agent cannot start one.
"""

from __future__ import annotations

import axme_meter

client = axme_meter.OpenAI()
TICKETS = {"T-4711": "Charged twice for the Pro plan.", "T-4712": "Password reset email never arrives."}


def process_ticket(ticket_id: str, text: str) -> None:
    with axme_meter.intent(f"int_{ticket_id.lower()}", ticket=ticket_id, queue="billing"):
        research = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}])
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"Draft a reply: {research.choices[0].message.content}"}],
        )


if __name__ == "__main__":
    with axme_meter.agent("agent://acme/production/support-agent"):
        for ticket_id, text in TICKETS.items():
            process_ticket(ticket_id, text)
    for intent, totals in sorted(axme_meter.spend().by_intent.items(), key=lambda kv: str(kv[0])):
        print(f"{intent}: {totals.calls} calls, ${totals.cost_usd}")
