"""A process whose disk fills up and frees again while the gateway is down (RLIMIT_FSIZE stands in for the disk).

Prints its spend as JSON, then ``ready`` once the spool is writable again, then waits to be killed.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent), str(HERE)]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us

import axme_meter  # noqa: E402
from support.transport_helpers import AGENT, CountingOpenAI, chat, new_client  # noqa: E402
from support.polling import wait_for  # noqa: E402


def main() -> None:
    client = new_client(CountingOpenAI())
    spool = lambda: Path(str(axme_meter.transport_status()["spool_dir"]))  # noqa: E731
    with axme_meter.agent(AGENT):
        chat(client)
        wait_for(lambda: axme_meter.transport_status().get("spool_dir") and list(spool().glob("proc-*.json")),
                 what="the first spool file")
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16, hard))  # the disk is full
        chat(client)
        chat(client)
        wait_for(lambda: axme_meter.transport_status()["spool_writable"] is False, what="the failed write")
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
        wait_for(lambda: axme_meter.transport_status()["spool_writable"] is True, what="the spool to resume")
    state = json.loads(next(spool().glob("proc-*.json")).read_text())
    print(json.dumps({"cost": str(axme_meter.spend().cost_usd), "calls": axme_meter.spend().calls,
                      "spooled_calls": sum(e["metrics"]["llm_calls"] for e in state["entries"])}), flush=True)
    print("ready", flush=True)
    time.sleep(120)


if __name__ == "__main__":
    main()
