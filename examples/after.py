"""The seed's agent, after axme_meter: one line changed, every call priced and attributed.

``axme_meter.spend()`` now knows what each call cost; with ``AXME_GATEWAY_URL`` set,
the gateway knows too, and a cost policy can stop this agent.

Run against the simulator: ``OPENAI_BASE_URL=http://127.0.0.1:8700/v1 OPENAI_API_KEY=sk-sim python examples/after.py``
(start it with ``axme-meter simulate --port 8700``), or against OpenAI with your key.
"""

from __future__ import annotations

from axme_meter import OpenAI  # the one changed line

client = OpenAI()

TICKETS = {
    "T-4711": "I was billed twice this month for the Pro plan.",
    "T-4712": "The password reset email never arrives.",
}


def process_ticket(ticket_id: str, text: str) -> str:
    reply = client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "You are a support research agent. Answer in two sentences."},
            {"role": "user", "content": f"Ticket {ticket_id}: {text}"},
        ],
    )
    return reply.choices[0].message.content or ""


if __name__ == "__main__":
    for ticket_id, text in TICKETS.items():
        print(ticket_id, process_ticket(ticket_id, text)[:60], "...")
