"""Async agents: ``axme_meter.AsyncOpenAI`` plus one intent per asyncio task.

Each task gets its own copy of the context, so concurrent tickets never leak
their intent into each other.
"""

from __future__ import annotations

import asyncio

import axme_meter

client = axme_meter.AsyncOpenAI()


async def process_ticket(ticket_id: str) -> str:
    async with axme_meter.intent(f"int_{ticket_id.lower()}", ticket=ticket_id):
        reply = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"Research ticket {ticket_id}"}]
        )
        return reply.choices[0].message.content or ""


@axme_meter.agent("agent://acme/production/async-agent")
async def main() -> None:
    await asyncio.gather(*(process_ticket(f"T-{n}") for n in range(4711, 4715)))
    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
    spent = axme_meter.spend()
    print(f"{spent.calls} calls over {len(spent.by_intent)} intents, ${spent.cost_usd}")
