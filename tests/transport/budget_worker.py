"""A client process for the grant tests: calls through ``axme_meter.OpenAI`` until its budget says no.

``python budget_worker.py <mode> <threads>`` with the gateway in ``AXME_GATEWAY_URL`` / ``AXME_API_KEY``
and the agent in ``AXME_AGENT``. Modes: ``loop`` (every thread calls until ``BudgetExceeded``), ``hold``
(one call, print, then wait to be killed), ``once`` (one call, exit normally), ``crash`` (as ``loop``, then
die at once with ``os._exit``: no exit flush, no grant returned), ``stepwise`` (see :func:`stepwise`).
Prints one JSON line: ``{"calls", "refused", "openai_requests", "cost", "ungranted_calls", "errors"}``;
``calls`` are the calls OpenAI answered.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent), str(HERE)]

import axme_meter  # noqa: E402
from support.transport_helpers import CountingOpenAI, chat, new_client  # noqa: E402


def stepwise(client: object) -> None:
    """Commands on stdin, one per line: ``call`` (one call), ``flush`` (a short flush) or ``exit`` (exit
    normally, so the exit flush runs); each is answered ``ok`` once done."""
    for line in sys.stdin:
        command = line.strip()
        if command == "call":
            chat(client)
        elif command == "flush":
            axme_meter.flush(timeout=1)
        print("ok", flush=True)
        if command == "exit":
            return


def main() -> None:
    mode, threads = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
    openai_side = CountingOpenAI()
    client = new_client(openai_side)
    if mode == "stepwise":
        with axme_meter.agent(os.environ["AXME_AGENT"]), axme_meter.intent("int_steps"):
            stepwise(client)
        return
    lock = threading.Lock()
    report = {"calls": 0, "refused": 0, "errors": []}

    def work() -> None:
        calls = 0
        while True:
            try:
                chat(client)
                calls += 1
            except axme_meter.BudgetExceeded:
                with lock:
                    report["refused"] += 1
                break
            except Exception as exc:  # reported, never hidden
                with lock:
                    report["errors"].append(repr(exc))
                break
            if mode not in ("loop", "crash") or calls >= 10_000:
                break
        with lock:
            report["calls"] += calls

    workers = [threading.Thread(target=axme_meter.bind(work)) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    report["openai_requests"] = openai_side.requests
    report["cost"] = str(axme_meter.spend().cost_usd)
    report["ungranted_calls"] = axme_meter.transport_status()["ungranted_calls"]
    print(json.dumps(report), flush=True)
    if mode == "crash":
        os._exit(0)
    if mode == "hold":
        time.sleep(120)


if __name__ == "__main__":
    main()
