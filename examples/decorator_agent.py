"""Attribute everything a function spends to one agent, with a decorator.

Works on sync, async and generator functions; calls made anywhere inside (helpers,
libraries) are booked to the agent, because attribution rides on contextvars.
"""

from __future__ import annotations

import axme_meter

client = axme_meter.OpenAI()


def summarise(text: str) -> str:
    """A helper that knows nothing about agents: its call is still attributed."""
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"Summarise: {text}"}])
    return reply.choices[0].message.content or ""


@axme_meter.agent("agent://acme/production/research-agent")
def research(question: str) -> str:
    notes = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": question}])
    return summarise(notes.choices[0].message.content or "")


@axme_meter.agent("agent://acme/production/writer-agent")
def write(brief: str) -> str:
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"Write: {brief}"}])
    return reply.choices[0].message.content or ""


if __name__ == "__main__":
    write(research("Why do customers get billed twice?"))
    for agent, totals in sorted(axme_meter.spend().by_agent.items()):
        print(f"{agent}: {totals.calls} calls, ${totals.cost_usd}")
