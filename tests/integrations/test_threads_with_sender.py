"""Threads calling ``axme_meter.OpenAI`` while the heartbeat sender starts, in a fresh interpreter.

openai 3.x looks at ``sys.modules["httpx"]`` on every request (to accept legacy httpx
timeouts). If another thread is importing httpx at that moment, the SDK sees a
half-initialised module and the user's call fails with ``AttributeError``. The
sender must not make that import on its own thread while callers run.

The race is real but narrow (it hit ~800 of ~5,000 calls in benchmarks/overshoot.py with
8 processes). To check it deterministically the child slows the import of
``httpx._client`` (which happens while ``httpx`` is half-initialised) by 0.5 s, as a cold
disk or a loaded machine would.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from axme_meter.demo._simulator import Simulator

pytestmark = pytest.mark.skipif(importlib.util.find_spec("axme_meter.gateway") is None,
                                reason="needs the embedded gateway")

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys, threading, time

    class SlowHttpxImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "httpx._client":
                time.sleep(0.5)  # httpx is in sys.modules, half-initialised, meanwhile
            return None

    sys.meta_path.insert(0, SlowHttpxImport())
    import axme_meter
    assert "httpx" not in sys.modules, "this check needs an interpreter where httpx is not imported yet"
    axme_meter.configure(gateway_url=sys.argv[1], api_key=sys.argv[2], heartbeat_interval=0.2, spool_dir=sys.argv[4])
    client = axme_meter.OpenAI(base_url=sys.argv[3], api_key="sk-sim", max_retries=0)
    errors, lock = [], threading.Lock()
    stop_at = time.monotonic() + 2.5  # past the sender's first send (within 1 s of the first call)
    def work():
        while time.monotonic() < stop_at:
            try:
                client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
    with axme_meter.agent("agent://acme/production/threads"):
        threads = [threading.Thread(target=axme_meter.bind(work)) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    axme_meter.flush(timeout=10)
    print(json.dumps({"errors": errors[:3], "count": len(errors), "calls": axme_meter.spend().calls}))
    """
)


def test_no_call_fails_while_the_sender_starts(tmp_path: Path) -> None:
    from axme_meter.demo._gateway import EmbeddedGateway

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AXME_", "OPENAI_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")]))
    with EmbeddedGateway(tmp_path / "gw") as gateway, Simulator() as sim:
        results = []
        for _ in range(2):  # fresh interpreters: httpx not imported yet
            done = subprocess.run([sys.executable, "-c", SCRIPT, gateway.url, gateway.admin_key, sim.base_url,
                                   str(tmp_path / "spool")], env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-2000:]
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert [r["count"] for r in results] == [0, 0], [r["errors"] for r in results]
    assert all(r["calls"] > 0 for r in results)
