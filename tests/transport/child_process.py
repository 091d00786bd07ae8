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
from axme_meter import _transport  # noqa: E402
from transport_helpers import AGENT, CountingOpenAI, chat, new_client  # noqa: E402

_transport.install()  # idempotent; axme_meter/__init__ does it once wired


def main() -> None:
    mode = sys.argv[1]
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    if mode == "status":
        print(json.dumps(_transport.status(), default=str), flush=True)
        return
    if mode == "flush":
        print(json.dumps({"flushed": _transport.flush(timeout=10)}), flush=True)
        return
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
