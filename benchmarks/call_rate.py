"""Call rate: the client's overhead at high call rates while the heartbeat sender runs.

OpenAI is an in-process mock transport (no sockets), so calls are as fast as the
SDK allows and any cost added by metering, the budget pre-check, lease
accounting or the background sender shows up. The gateway is a real process
(SQLite, loopback) with a generous policy, so leases are live.

In one run:
1. raw ``openai.OpenAI`` vs ``axme_meter.OpenAI`` meter-only (no gateway);
2. raw vs ``axme_meter.OpenAI`` with the sender running (heartbeat every --interval s);
   rounds interleave raw and metered batches, 1 and --threads threads, medians reported;
3. --processes processes calling flat out for --seconds: heartbeat requests per
   interval per process (target: 1, whatever the call rate).

Run: python benchmarks/call_rate.py [--calls 600] [--rounds 9] [--threads 4] [--interval 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import openai

if int(openai.__version__.split(".")[0]) >= 3:
    import httpx2 as mock_http
else:
    import httpx as mock_http  # type: ignore[no-redef]

AGENT = "agent://bench/production/rate"
MESSAGES = [{"role": "user", "content": "Classify ticket T-4711 in one word."}]
BODY = json.dumps({
    "id": "chatcmpl-rate", "object": "chat.completion", "created": 1764370000, "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "message": {"role": "assistant", "content": "billing", "refusal": None}}],
    "usage": {"prompt_tokens": 640, "completion_tokens": 2, "total_tokens": 642,
              "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}},
}).encode()


def _answer(request: Any) -> Any:
    return mock_http.Response(200, headers={"content-type": "application/json"}, content=BODY)


def make_client(cls: type) -> Any:
    return cls(api_key="sk-bench", base_url="http://openai.mock/v1", max_retries=0,
               http_client=mock_http.Client(transport=mock_http.MockTransport(_answer)))


def per_call_us(client: Any, calls: int, threads: int) -> float:
    """Process CPU time per call (all threads, the sender's included) with ``threads`` threads sharing ``calls``.

    CPU time rather than wall time: on a shared machine other processes' load changes wall
    time by more than the overhead being measured, but not the CPU this process burns.
    """
    import axme_meter

    share = calls // threads

    def work() -> None:
        for _ in range(share):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    with axme_meter.agent(AGENT):
        workers = [threading.Thread(target=axme_meter.bind(work)) for _ in range(threads)]
    start = time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (time.process_time() - start) / (share * threads) * 1e6


def compare(label: str, raw: Any, metered: Any, args: argparse.Namespace, threads: int) -> float:
    """Median over rounds of the metered/raw ratio measured back to back (order alternating each round)."""
    per_call_us(raw, 200, 1)
    per_call_us(metered, 200, 1)
    raw_t, met_t, ratios = [], [], []
    for n in range(args.rounds):
        if n % 2:
            m = per_call_us(metered, args.calls, threads)
            r = per_call_us(raw, args.calls, threads)
        else:
            r = per_call_us(raw, args.calls, threads)
            m = per_call_us(metered, args.calls, threads)
        raw_t.append(r)
        met_t.append(m)
        ratios.append(m / r)
    r, m, ratio = statistics.median(raw_t), statistics.median(met_t), statistics.median(ratios)
    print(f"{label:<30}{threads:>2} thr  raw {r:7.1f} us  metered {m:7.1f} us  overhead {m - r:+6.1f} us  "
          f"ratio {ratio:5.3f}  (CPU per call, median of {args.rounds} paired rounds)")
    return ratio


def child(config: dict[str, Any]) -> None:
    """Phase 3 worker: call flat out for ``seconds`` with the sender running; report its request count."""
    import axme_meter

    axme_meter.configure(gateway_url=config["gateway"], api_key=config["key"],
                         heartbeat_interval=config["interval"], spool_dir=config["spool"])
    client = make_client(axme_meter.OpenAI)
    calls = 0
    with axme_meter.agent(AGENT):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # starts the sender
        time.sleep(config["interval"] * 1.5)  # let the first heartbeat go, then count whole intervals
        before = int(axme_meter.transport_status()["requests"])  # type: ignore[call-overload]
        start = time.monotonic()
        while time.monotonic() - start < config["seconds"]:
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            calls += 1
        elapsed = time.monotonic() - start
        after = int(axme_meter.transport_status()["requests"])  # type: ignore[call-overload]
    print("RESULT " + json.dumps({"calls": calls, "seconds": elapsed, "requests": after - before}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    import axme_meter

    from axme_meter.cli._policy import GatewayAPI
    from axme_meter.demo._gateway import EmbeddedGateway

    raw, metered = make_client(openai.OpenAI), make_client(axme_meter.OpenAI)
    work = Path(tempfile.mkdtemp(prefix="axme-callrate-"))
    print(f"call rate: openai {openai.__version__}, mock transport, {args.calls} calls x {args.rounds} rounds, medians")
    for threads in (1, args.threads):
        compare("meter-only (no gateway)", raw, metered, args, threads)
    with EmbeddedGateway(work / "gateway") as gateway, GatewayAPI(gateway.url, gateway.admin_key) as api:
        api.put_policy(AGENT, {"max_cost_per_day_usd": "1000000", "action_on_breach": "block"})
        axme_meter.configure(gateway_url=gateway.url, api_key=gateway.admin_key,
                             heartbeat_interval=args.interval, spool_dir=work / "spool")
        before, start = int(axme_meter.transport_status().get("requests", 0) or 0), time.monotonic()
        for threads in (1, args.threads):
            compare(f"sender running (every {args.interval:g}s)", raw, metered, args, threads)
        axme_meter.flush(timeout=10)
        sent, elapsed = int(axme_meter.transport_status().get("requests", 0) or 0) - before, time.monotonic() - start
        print(f"this process: {sent} heartbeat requests in {elapsed:.1f}s = "
              f"{sent / (elapsed / args.interval):.2f} per {args.interval:g}s interval (at most 1; none while only the raw "
              "client ran, since nothing was spent)")
        config = {"gateway": gateway.url, "key": gateway.admin_key, "interval": args.interval,
                  "spool": str(work / "spool-children"), "seconds": args.seconds}
        procs = [subprocess.Popen([sys.executable, __file__, "--child", json.dumps(config)], stdout=subprocess.PIPE,
                                  text=True) for _ in range(args.processes)]
        for proc in procs:
            out, _ = proc.communicate(timeout=args.seconds + 60)
            line = next((l for l in out.splitlines() if l.startswith("RESULT ")), None)
            if line is None:
                print(f"child exited {proc.returncode} without a result")
                continue
            r = json.loads(line[len("RESULT "):])
            print(f"process: {r['calls'] / r['seconds']:8.0f} calls/s, {r['requests']} heartbeat requests in "
                  f"{r['seconds']:.1f}s = {r['requests'] / (r['seconds'] / args.interval):.2f} per interval")
        axme_meter.configure(gateway_url=None)


if __name__ == "__main__":
    main()
