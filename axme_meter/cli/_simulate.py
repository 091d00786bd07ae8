"""``axme-meter simulate``: the demo's OpenAI-compatible simulator as a stand-alone server on loopback.

It lets a user run their own code offline: point ``OPENAI_BASE_URL`` at it and every
chat completion, Responses and embeddings call is answered with generated text and
the usage OpenAI would bill, so axme_meter prices it exactly as it would a real one.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from ._gateway import _port, bind_error
from ._help import examples


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate", help="run a simulated OpenAI endpoint on loopback (offline, no cost)",
        description="Serve a simulated OpenAI-compatible API on 127.0.0.1: chat completions (plain and streamed), the "
        "Responses API and embeddings, with OpenAI's usage fields, so your own code runs and is metered offline. "
        "Any API key is accepted. Stop it with Ctrl-C.",
        epilog=examples("axme-meter simulate --port 8700",
                        "export OPENAI_BASE_URL=http://127.0.0.1:8700/v1 OPENAI_API_KEY=sk-simulator",
                        "python my_agent.py            # axme_meter.OpenAI() now talks to the simulator"),
    )
    parser.add_argument("--port", type=_port, default=8700, help="port on 127.0.0.1 (default 8700; 0 picks a free one)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed and request order give the same answers (default 0)")
    parser.add_argument("--latency", type=_seconds, default=0.0, metavar="S", help="seconds before the first byte (default 0)")
    parser.add_argument("--completion-tokens", type=_tokens, default=None, metavar="N",
                        help="completion tokens per answer (default: 120-360, drawn per request)")
    parser.set_defaults(handler=run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 600 seconds, got {text}")
    return value


def _tokens(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of tokens: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        from ..demo._simulator import Simulator, SimulatorConfig
    except ModuleNotFoundError as exc:
        print(f"axme-meter simulate: needs the 'gateway' extra ({exc.name} is missing): pip install 'axme_meter[gateway]'",
              file=sys.stderr)
        return 1
    config = SimulatorConfig(seed=args.seed, latency=args.latency)
    if args.completion_tokens is not None:
        config.completion_tokens = args.completion_tokens
    simulator = Simulator(config, port=args.port)
    try:
        simulator.start()
    except OSError as exc:
        print(f"axme-meter simulate: {bind_error('127.0.0.1', args.port, exc)}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"axme-meter simulate: OpenAI-compatible simulator listening on {simulator.base_url}\n"
          f"  export OPENAI_BASE_URL={simulator.base_url} OPENAI_API_KEY=sk-simulator\n"
          "  (any key works; nothing leaves this machine; Ctrl-C stops it)", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        served = simulator.stats.requests
        simulator.stop()
    print(f"axme-meter simulate: stopped after {served:,} request(s)", flush=True)
    return 0
