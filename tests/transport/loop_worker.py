"""A client process for the loop-detection tests: sends one prompt again and again through ``axme_meter.OpenAI``.

``python loop_worker.py <prompt> <calls> [<gap seconds>]`` with the gateway in ``AXME_GATEWAY_URL`` /
``AXME_API_KEY`` and the agent in ``AXME_AGENT``. ``<prompt>`` ``distinct`` sends a new prompt every call;
``variants`` sends one prompt in ways that differ only in what is not content (streamed or not, ``user``,
``metadata``, ``temperature``); ``responses`` and ``embeddings`` send one input to those endpoints.
Stops at the first ``BudgetExceeded``; a file named by ``LOOP_WORKER_GO`` (if set) must exist before it
starts, so several workers start together. Prints one JSON line:
``{"calls", "refused", "openai_requests", "policy", "message", "errors", "loop_policies"}``.
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


def _call(client: object, prompt: str, content: str, i: int) -> None:
    model, messages = "gpt-4o-2024-08-06", [{"role": "user", "content": content}]
    if prompt == "responses":
        client.responses.create(model=model, input="the same input")  # type: ignore[attr-defined]
    elif prompt == "embeddings":
        client.embeddings.create(model="text-embedding-3-small", input="the same input")  # type: ignore[attr-defined]
    elif prompt == "variants":
        extra = [{}, {"stream": True}, {"user": f"u{i}"}, {"metadata": {"run": str(i)}, "store": True},
                 {"temperature": 0.1 * (i % 5)}][i % 5]
        result = client.chat.completions.create(model=model, messages=messages, **extra)  # type: ignore[attr-defined]
        if extra.get("stream"):
            list(result)
    else:
        client.chat.completions.create(model=model, messages=messages)  # type: ignore[attr-defined]


def main() -> None:
    prompt, calls = sys.argv[1], int(sys.argv[2])
    gap = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    go = os.environ.get("LOOP_WORKER_GO")
    while go and not Path(go).exists():
        time.sleep(0.01)
    fake = FakeOpenAI()
    fake.json("/embeddings", {"object": "list", "model": "text-embedding-3-small",
                              "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                              "usage": {"prompt_tokens": 8, "total_tokens": 8}})
    client = fake_client(axme_meter.OpenAI, fake)
    report: dict[str, object] = {"calls": 0, "refused": 0, "policy": None, "message": None, "errors": []}
    try:
        with axme_meter.intent("int_loop"):
            for i in range(calls):
                content = f"{prompt} {i}" if prompt == "distinct" else prompt
                try:
                    _call(client, prompt, content, i)
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
    report["openai_requests"] = len(fake.requests)
    report["loop_policies"] = axme_meter.transport_status()["loop_policies"]
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
