"""Streaming is metered too, with no change to your loop.

axme_meter asks for ``stream_options.include_usage`` when you did not, and hides
the extra usage-only chunk, so ``chunk.choices[0]`` keeps working. If a stream is
cut or you stop early, the call is priced from a token estimate and flagged.
"""

from __future__ import annotations

import axme_meter

client = axme_meter.OpenAI()

if __name__ == "__main__":
    with axme_meter.agent("agent://acme/production/chat-agent"):
        stream = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Explain prompt caching."}], stream=True
        )
        for chunk in stream:
            print(chunk.choices[0].delta.content or "", end="", flush=True)
        print()
        # Stopping early: the rest is never generated, and what was received is estimated.
        stream = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Write a long essay."}], stream=True
        )
        for index, _chunk in enumerate(stream):
            if index == 5:
                break
        stream.close()
    spent = axme_meter.spend()
    print(f"{spent.calls} streamed calls, ${spent.cost_usd}, {spent.estimated_calls} estimated")
