"""A client process for the loop-detection tests: sends one prompt again and again through ``axme_meter.OpenAI``.

``python loop_worker.py <prompt> <calls> [<gap seconds>]`` with the gateway in ``AXME_GATEWAY_URL`` /
``AXME_API_KEY`` and the agent in ``AXME_AGENT``. ``<prompt>`` ``distinct`` sends a new prompt every call.
Stops at the first ``BudgetExceeded``; a file named by ``LOOP_WORKER_GO`` (if set) must exist before it
starts, so several workers start together. Prints one JSON line:
``{"calls", "refused", "openai_requests", "policy", "message", "errors"}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent), str(HERE)]

import axme_meter  # noqa: E402
from support.openai_mock import FakeOpenAI, client as fake_client  # noqa: E402


def main() -> None:
    prompt, calls = sys.argv[1], int(sys.argv[2])
    gap = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    go = os.environ.get("LOOP_WORKER_GO")
    while go and not Path(go).exists():
        time.sleep(0.01)
    fake = FakeOpenAI()
    client = fake_client(axme_meter.OpenAI, fake)
    report: dict[str, object] = {"calls": 0, "refused": 0, "policy": None, "message": None, "errors": []}
    try:
        with axme_meter.intent("int_loop"):
            for i in range(calls):
                content = f"{prompt} {i}" if prompt == "distinct" else prompt
                try:
                    client.chat.completions.create(model="gpt-4o-2024-08-06", messages=[{"role": "user", "content": content}])
                    report["calls"] += 1  # type: ignore[operator]
                except axme_meter.BudgetExceeded:
                    raise
                except Exception as exc:  # reported, never hidden
                    report["errors"].append(repr(exc))  # type: ignore[union-attr]
                    break
                if gap:
                    time.sleep(gap)
    except axme_meter.BudgetExceeded as exc:  # a call, or the intent's registration, was refused
        report.update(refused=1, policy=exc.policy, message=exc.message)
    report["openai_requests"] = fake.count("/chat/completions")
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
