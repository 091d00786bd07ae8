"""The ``axme-meter`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``; the
module is imported only when ``main`` builds the parser, so ``import axme_meter``
never pays for it. Every parser is a :class:`._help.Parser` (one-line errors,
examples in ``--help``), and ``main`` turns the errors a user can cause into one
line and a non-zero exit instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from . import _dburl
from ._help import Parser, examples

# Order is the order shown in --help.
_COMMAND_MODULES = ("_demo", "_simulate", "_price", "_gateway", "_keys", "_approvals", "_policy", "_report", "_spool")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="axme-meter",
        description="Per-agent LLM cost metering: prices, the gateway, policies, reports and the demo.",
        epilog=examples("axme-meter demo", "axme-meter gateway", "axme-meter policy set agent://myorg/prod/bot --max-cost-per-day 5",
                        "axme-meter COMMAND --help"),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # subcommand not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    db_url = _db_url(args)
    problem = _dburl.check(db_url) if db_url else None
    if problem:
        print(f"axme-meter {args.command}: {problem}", file=sys.stderr)
        return 1
    try:
        result = args.handler(args)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except Exception as exc:
        from ._errors import explain

        message = explain(exc, db_url)
        if message is None:
            raise
        print(f"axme-meter {args.command}: {message}", file=sys.stderr)
        return 1
    return int(result or 0)


def _db_url(args: argparse.Namespace) -> str | None:
    """The database a command will open (``--db``, else ``AXME_GATEWAY_DB``), for commands that take ``--db``."""
    if not hasattr(args, "db"):
        return None
    return args.db or os.environ.get("AXME_GATEWAY_DB") or None


if __name__ == "__main__":
    sys.exit(main())
