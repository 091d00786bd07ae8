"""Client overhead of axme_meter.OpenAI over raw openai.OpenAI, measured in one run.

Both clients talk to the same in-process mock transport (no network), so the
difference is what metering adds: pre-flight, usage reading, pricing, the meter.
Rounds interleave raw and metered batches and the median is reported, because
absolute times on a shared 2-core machine are noise; the ratios are the result.

Run: python benchmarks/overhead.py [--calls 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import openai

if int(openai.__version__.split(".")[0]) >= 3:
    import httpx2 as http
else:
    import httpx as http  # type: ignore[no-redef]

import axme_meter
from axme_meter._pricing import Usage, table

MESSAGES = [{"role": "user", "content": "Summarise ticket 42 in one line."}]
CHAT = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1764370000, "model": "gpt-4o-2024-08-06",
    "service_tier": "default",
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "message": {"role": "assistant", "content": "Refund issued.", "refusal": None}}],
    "usage": {"prompt_tokens": 1200, "completion_tokens": 60, "total_tokens": 1260,
              "prompt_tokens_details": {"cached_tokens": 1024}, "completion_tokens_details": {"reasoning_tokens": 0}},
}).encode()


def _stream_body(include_usage: bool) -> bytes:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-08-06"}
    events = [{**base, "choices": [{"index": 0, "delta": {"content": f"word{i} "}, "finish_reason": None}]}
              for i in range(20)]
    if include_usage:
        events.append({**base, "choices": [], "usage": {"prompt_tokens": 1200, "completion_tokens": 20,
                                                        "total_tokens": 1220}})
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


STREAM_WITH_USAGE, STREAM_PLAIN = _stream_body(True), _stream_body(False)


def handler(request: Any) -> Any:
    body = json.loads(request.content)
    if body.get("stream"):
        include = (body.get("stream_options") or {}).get("include_usage")
        return http.Response(200, headers={"content-type": "text/event-stream"},
                             content=STREAM_WITH_USAGE if include else STREAM_PLAIN)
    return http.Response(200, headers={"content-type": "application/json"}, content=CHAT)


def make(cls: type) -> Any:
    return cls(api_key="sk-bench", base_url="http://bench.test/v1", max_retries=0,
               http_client=http.Client(transport=http.MockTransport(handler)))


def per_call_us(fn: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def compare(label: str, raw: Callable[[], Any], metered: Callable[[], Any], calls: int, rounds: int) -> None:
    """Alternate short blocks of raw and metered calls; report medians of per-block figures.

    Short alternating blocks see the same background load, so their difference and
    ratio are far steadier on a shared machine than two long runs compared afterwards.
    """
    for fn in (raw, metered):  # warm up caches, pricing table, pydantic models
        per_call_us(fn, max(50, calls // 20))
    block = 20
    raw_times, diffs, ratios = [], [], []
    for _ in range(rounds * max(1, calls // block)):
        r = per_call_us(raw, block)
        m = per_call_us(metered, block)
        raw_times.append(r)
        diffs.append(m - r)
        ratios.append(m / r)
    raw_med, diff, ratio = statistics.median(raw_times), statistics.median(diffs), statistics.median(ratios)
    print(f"{label:<24} raw {raw_med:8.1f} us   overhead {diff:+7.1f} us   ratio {ratio:.4f} ({(ratio - 1) * 100:+.2f} %)")


def _grant_everything() -> None:
    """What a call pays against a gateway that grants budget: reserve the predicted cost from this process's
    slice before the call, settle the real cost after it. A huge slice is put in place directly, so only that
    local bookkeeping is measured (the gateway is asked again only when a slice runs low, off the hot path)."""
    import time as _time

    from axme_meter import _runtime
    from axme_meter._attribution import current_agent

    budget = _runtime.default().budget
    budget.granting = True
    budget.apply_grants(current_agent(), {"state": "active", "unlimited": False, "call_cost_usd": "0.01", "grants": [
        {"id": "gr_bench", "policy": "max_cost_per_day_usd", "window": "day", "amount": "1000000",
         "ttl_seconds": 86_400, "resets_in_seconds": 86_400}]}, _time.monotonic())


def _loop_policy_on() -> None:
    """What a call pays when the agent has ``max_identical_requests_per_hour``: the keyed fingerprint of the
    request and the count in a sliding hour (the policy arrives as a heartbeat answer would bring it; its
    limit is high enough that no call is refused)."""
    from axme_meter import _runtime
    from axme_meter._attribution import current_agent
    from axme_meter._protocol import LoopState

    _runtime.default().budget.loops.apply(current_agent(), LoopState(limit=10**9, action="block", key=b"k" * 32), None)


def pricing_cost(iterations: int = 200_000) -> None:
    t = table()
    usage = Usage(input_tokens=1200, cached_tokens=1024, output_tokens=60)
    t.quote("gpt-4o-2024-08-06", usage)
    start = time.perf_counter()
    for _ in range(iterations):
        t.quote("gpt-4o-2024-08-06", usage)
    quote_us = (time.perf_counter() - start) / iterations * 1e6
    start = time.perf_counter()
    for _ in range(iterations):
        Usage(input_tokens=1200, cached_tokens=1024, output_tokens=60)
    baseline_us = (time.perf_counter() - start) / iterations * 1e6
    print(f"{'pricing one call':<22} {quote_us:.2f} us per quote "
          f"({quote_us / baseline_us:.1f}x the cost of building its Usage, {baseline_us:.2f} us)")


def import_delta(runs: int = 7) -> None:
    code = ("import time; t0 = time.perf_counter(); import openai; t1 = time.perf_counter(); "
            "import axme_meter; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)")
    openai_ms, ours_ms = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        openai_ms.append(float(out[0]) * 1e3)
        ours_ms.append(float(out[1]) * 1e3)
    print(f"{'import time':<22} import openai {statistics.median(openai_ms):.1f} ms, then import axme_meter "
          f"+{statistics.median(ours_ms):.1f} ms (ratio {statistics.median(ours_ms) / statistics.median(openai_ms):.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    raw, ours = make(openai.OpenAI), make(axme_meter.OpenAI)
    print(f"openai {openai.__version__}; alternating blocks of 20 raw / 20 metered calls; medians\n")
    compare("chat.completions", lambda: raw.chat.completions.create(model="gpt-4o", messages=MESSAGES),
            lambda: ours.chat.completions.create(model="gpt-4o", messages=MESSAGES), args.calls, args.rounds)
    _grant_everything()
    compare("chat, spending a grant", lambda: raw.chat.completions.create(model="gpt-4o", messages=MESSAGES),
            lambda: ours.chat.completions.create(model="gpt-4o", messages=MESSAGES), args.calls, args.rounds)
    compare("chat stream (20 chunks)",
            lambda: list(raw.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)),
            lambda: list(ours.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)),
            max(1, args.calls // 4), args.rounds)
    try:
        from axme_meter._budget import _loops  # noqa: F401  (this shape needs loop detection)
    except ImportError:
        print("chat, loop policy on      (not in this version)")
    else:
        _loop_policy_on()
        compare("chat, loop policy on", lambda: raw.chat.completions.create(model="gpt-4o", messages=MESSAGES),
                lambda: ours.chat.completions.create(model="gpt-4o", messages=MESSAGES), args.calls, args.rounds)
    pricing_cost()
    import_delta()
    spent = axme_meter.spend()
    print(f"\nmetered {spent.calls} calls, ${spent.cost_usd} (sanity: nothing unpriced: {spent.unpriced_calls == 0})")


if __name__ == "__main__":
    main()
