"""``axme-meter demo``: replay the runaway research-agent loop against the embedded gateway, offline."""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal, InvalidOperation

from ._help import examples


def _positive_decimal(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount in USD: {value!r}") from None
    if not amount.is_finite() or amount <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive amount: {value!r}")
    return amount


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {value!r}")
    return number


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value!r}")
    return number


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "demo",
        help="watch a runaway agent loop get blocked by a cost policy (offline, about a minute)",
        description="Starts the embedded gateway (SQLite, temp dir) and a simulated OpenAI endpoint, puts a "
        "$/day block policy on agent://demo/production/research-agent, and runs the buggy agent loop "
        "through axme_meter.OpenAI until BudgetExceeded stops it. In a terminal the gateway and its dashboard "
        "stay up until you press Enter; --keep leaves them running after the demo exits.",
        epilog=examples("axme-meter demo", "axme-meter demo --keep            # then open the dashboard URL it prints",
                        "axme-meter demo --budget 0.5 --speed 20 --json summary.json",
                        "axme-meter demo --loop-policy    # stopped by loop detection, not by the budget",
                        "OPENAI_API_KEY=sk-... axme-meter demo --real   # real calls, about $0.05"),
    )
    parser.add_argument("--budget", type=_positive_decimal, metavar="USD",
                        help="the policy's max cost per day (default 2, or 0.05 with --real)")
    parser.add_argument("--speed", type=_positive_float, default=10.0, metavar="X",
                        help="time scale: a simulated call takes 0.6/X s and heartbeats go every 15/X s (default 10)")
    parser.add_argument("--real", action="store_true",
                        help="call the real OpenAI API with OPENAI_API_KEY (spends real money, up to about --budget)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the gateway and its dashboard running afterwards (prints the URL, admin key and pid)")
    parser.add_argument("--max-seconds", type=_positive_float, default=240.0, metavar="S",
                        help="safety stop if no block arrives (default 240)")
    parser.add_argument("--loop-policy", type=_positive_int, nargs="?", const=3, default=None, metavar="N",
                        help="also set max_identical_requests_per_hour (default N=3): the loop detector stops the "
                        "runaway (it repeats the same prompts) long before the money policy would")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    parser.add_argument("--json", metavar="PATH", help="also write the summary as JSON to PATH ('-' for stdout)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console

        from ..demo._runner import DemoOptions, DemoSummary, run_demo
        from ..demo._summary import print_summary
    except ModuleNotFoundError as exc:
        print(f"axme-meter demo needs the gateway extra ({exc.name} is missing): "
              'pip install "axme_meter[gateway]"', file=sys.stderr)
        return 2
    console = Console(stderr=args.json == "-")
    # Waiting for Enter only makes sense with a person at a terminal: never under CI, pipes or tests.
    hold = not args.keep and sys.stdin is not None and sys.stdin.isatty() and console.is_terminal
    options = DemoOptions(budget=args.budget, speed=args.speed, real=args.real, keep=args.keep,
                          max_seconds=args.max_seconds, seed=args.seed, live=console.is_terminal, hold=hold,
                          loop_limit=args.loop_policy)

    def hand_off(summary: DemoSummary) -> None:
        print_summary(summary, console)
        if args.json:
            _write_json(args.json, summary.as_dict())
        if hold:
            try:
                console.input("[bold]press Enter to stop the gateway[/] (next time, --keep leaves it running) ")
            except (EOFError, KeyboardInterrupt):
                console.print()

    summary = run_demo(options, console, hand_off)
    return 0 if summary.blocked else 1


def _write_json(path: str, data: dict[str, object]) -> None:
    text = json.dumps(data, indent=2)
    if path == "-":
        print(text, flush=True)
    else:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
