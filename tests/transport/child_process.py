"""A separate process that uses axme_meter the way an application would (configured from the environment).

Usage: ``python child_process.py <mode> [calls]``; modes: ``hang`` (make calls, report, wait to be killed),
``exit`` (make calls, exit normally), ``flush`` (only flush: delivers what dead processes spooled), ``status``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

if os.environ.get("CHILD_USER_SIGTERM"):
    # An application handler that exists before axme_meter is imported: axme_meter must chain to it.
    def _user_handler(signum: int, frame: object) -> None:
        print("user handler", flush=True)
        sys.exit(3)

    signal.signal(signal.SIGTERM, _user_handler)

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent), str(HERE)]

import axme_meter  # noqa: E402

AGENT = os.environ.get("CHILD_AGENT", "agent://acme/prod/research")


def _client_without_httpx() -> object:
    """What an openai 3.x application looks like: httpx2 only, plain ``httpx`` never imported."""
    import httpx2

    body = json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1764370000, "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
    }).encode()
    handler = lambda request: httpx2.Response(200, content=body, headers={"content-type": "application/json"})  # noqa: E731
    return axme_meter.OpenAI(api_key="sk-test", base_url="http://openai.test/v1", max_retries=0,
                             http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def main() -> None:
    mode = sys.argv[1]
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    if mode == "status":
        print(json.dumps(axme_meter.transport_status(), default=str), flush=True)
        return
    if mode == "flush":
        result = axme_meter.flush(timeout=10)
        print(json.dumps({"flushed": bool(result), "refused": result.refused_entries, "pending": result.pending_entries,
                          "state": result.state}), flush=True)
        return
    if os.environ.get("CHILD_NO_HTTPX"):
        client = _client_without_httpx()
        with axme_meter.agent(AGENT):
            for _ in range(calls):
                client.chat.completions.create(model="gpt-4o-2024-08-06", messages=[{"role": "user", "content": "hi"}])
                time.sleep(0.01)  # the sender thread's first request overlaps the next calls
        print(json.dumps({"cost": str(axme_meter.spend().cost_usd), "calls": axme_meter.spend().calls,
                          "httpx_imported": "httpx" in sys.modules}), flush=True)
        return
    from support.transport_helpers import CountingOpenAI, chat, new_client

    client = new_client(CountingOpenAI())
    with axme_meter.agent(AGENT):
        for _ in range(calls):
            chat(client)
    print(json.dumps({"cost": str(axme_meter.spend().cost_usd), "calls": axme_meter.spend().calls}), flush=True)
    if mode == "hang":
        print("ready", flush=True)
        time.sleep(120)


if __name__ == "__main__":
    main()
