"""What every subcommand shares: a parser whose errors are one line, and ``--help`` with examples.

argparse's own ``error()`` prints the whole usage block before the message; for a
user who mistyped one value the line that matters is the message, so errors here
are ``axme-meter policy set: argument --max-cost-per-day: ...`` plus a pointer to
``--help``, on one line, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` with one-line errors and help text whose examples keep their line breaks."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


def examples(*lines: str) -> str:
    """An ``epilog`` listing example command lines, one per line."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def subparsers_of(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below ``parser`` (depth first), e.g. to check that each has a description and examples."""
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                found.append(child)
                found.extend(subparsers_of(child))
    return found
