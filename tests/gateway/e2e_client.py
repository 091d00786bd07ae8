"""Child process for the end-to-end test: an application using ``axme_meter.OpenAI`` against our gateway.

Configured only through the environment (``AXME_GATEWAY_URL``, ``AXME_API_KEY``, ``AXME_AGENT``). Makes
calls (flushing spend after each) until ``BudgetExceeded``, then tries a few more, and prints a JSON report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent)]

import axme_meter  # noqa: E402
from support.openai_mock import FakeOpenAI, client  # noqa: E402



def main() -> None:
    fake = FakeOpenAI()
    llm = client(axme_meter.OpenAI, fake)
    made, blocked_at, error = 0, None, None
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 50):
        try:
            llm.chat.completions.create(model="gpt-4o-2024-08-06", messages=[{"role": "user", "content": "hi"}])
            made += 1
            axme_meter.flush(10)
        except axme_meter.BudgetExceeded as exc:
            blocked_at, error = made, str(exc)
            break
    seen_at_block = fake.count("/chat/completions")
    refused = 0
    for _ in range(5):
        try:
            llm.chat.completions.create(model="gpt-4o-2024-08-06", messages=[{"role": "user", "content": "again"}])
        except axme_meter.BudgetExceeded:
            refused += 1
    print(json.dumps({"made": made, "blocked_at": blocked_at, "error": error, "mock_at_block": seen_at_block,
                      "mock_after": fake.count("/chat/completions"), "refused_after": refused}))


if __name__ == "__main__":
    main()
