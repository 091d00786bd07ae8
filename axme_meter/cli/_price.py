"""``axme-meter price`` (cost of one call) and ``axme-meter prices`` (list the table).

Plain aligned text only: ``rich`` is not a base dependency.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import difflib
import fnmatch
import sys
from typing import Any

from .._money import to_decimal
from ._help import examples


def register(subparsers: Any) -> None:
    """Add the ``price`` and ``prices`` subcommands."""
    price = subparsers.add_parser(
        "price", help="price one call: tokens in, cost and breakdown out",
        description="Price one call from its token counts with the bundled price table (plus AXME_METER_PRICES), "
        "and show the breakdown, the entry it resolved to and the table version.",
        epilog=examples("axme-meter price gpt-4o --input 1000000 --output 200000 --cached 500000",
                        "axme-meter price o3-mini --input 2000 --output 3000 --reasoning 2500 --tier batch",
                        "axme-meter price gpt-4o-mini --input 800 --output 120 --date 2025-01-15"),
    )
    price.add_argument("model", help="model name as sent to or returned by the API, e.g. gpt-4o-2024-08-06")
    price.add_argument("--input", type=_count, default=0, help="input (prompt) tokens, including cached ones")
    price.add_argument("--output", type=_count, default=0, help="output tokens, including reasoning ones")
    price.add_argument("--cached", type=_count, default=0, help="cached input tokens (part of --input)")
    price.add_argument("--reasoning", type=_count, default=0, help="reasoning tokens (part of --output)")
    price.add_argument("--cache-write", type=_count, default=0, help="tokens written to the prompt cache (part of --input)")
    price.add_argument("--tier", choices=("flex", "priority", "fast", "batch"), help="service tier, or the Batch API")
    price.add_argument("--date", type=_date, help="price in force on this date (YYYY-MM-DD); default today")
    price.set_defaults(handler=run_price)

    prices = subparsers.add_parser(
        "prices", help="list the price table and its version",
        description="List the models in the price table (USD per 1M tokens, other units where they apply), "
        "the date each price was checked, and the table version every cost record carries.",
        epilog=examples("axme-meter prices", "axme-meter prices 'gpt-5*'", "axme-meter prices mini --date 2025-06-01"),
    )
    prices.add_argument("pattern", nargs="?", help="filter model ids: glob (gpt-4o*) or substring (mini)")
    prices.add_argument("--date", type=_date, help="show the prices in force on this date (YYYY-MM-DD)")
    prices.set_defaults(handler=run_prices)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of tokens, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"token counts cannot be negative, got {value}")
    return value


def _date(text: str) -> float:
    """YYYY-MM-DD -> epoch seconds at noon UTC of that day."""
    try:
        day = _dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2026-11-28, got {text!r}") from None
    return _dt.datetime(day.year, day.month, day.day, 12, tzinfo=_dt.timezone.utc).timestamp()


def _table() -> Any:
    """The table, or exit 2 with the loader's message (which names file, model and field)."""
    from .._pricing import table
    from .._pricing._load import PriceFileError

    try:
        return table()
    except PriceFileError as exc:
        print(f"axme-meter: cannot load prices: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _dollars(pico: int) -> str:
    return f"${to_decimal(pico):f}"


def run_price(args: argparse.Namespace) -> int:
    """Print the cost of one call with its breakdown, the resolved entry and the version."""
    from .._pricing import Usage

    t = _table()
    if t.resolve(args.model) is None:
        _unknown(t, args.model)
        return 2
    if args.cached + args.cache_write > args.input or args.reasoning > args.output:
        print("axme-meter: --cached plus --cache-write must not exceed --input, nor --reasoning --output (they are subsets)", file=sys.stderr)
        return 2
    usage = Usage(input_tokens=args.input, cached_tokens=args.cached, cache_write_tokens=args.cache_write,
                  output_tokens=args.output, reasoning_tokens=args.reasoning)
    quote = t.quote(args.model, usage, at=args.date, service_tier=args.tier, batch=args.tier == "batch")
    if not quote.priced:
        print(f"axme-meter: cannot price {args.model}: {quote.reason}", file=sys.stderr)
        return 2
    print(f"model:   {args.model} -> {quote.model}")
    print(f"tier:    {args.tier or 'standard'}")
    if quote.estimated:
        print(f"note:    estimated: {quote.reason}")
    print(f"cost:    {_dollars(quote.cost_pico)}")
    width = max((len(k) for k in quote.breakdown), default=0)
    for name, pico in quote.breakdown.items():
        print(f"  {name:<{width}}  {_dollars(pico)}")
    print(f"version: {quote.version}")
    return 0


def _unknown(t: Any, model: str) -> None:
    names = sorted(set(t.entries) | {a for e in t.entries.values() for a in e.aliases})
    close = difflib.get_close_matches(model.lower(), names, n=5, cutoff=0.5)
    print(f"axme-meter: unknown model {model!r} (table {t.version}).", file=sys.stderr)
    if close:
        print(f"  did you mean: {', '.join(close)}", file=sys.stderr)
    print(
        "  to add a price: put a [[models]] entry in a TOML file (format: pricing/README.md) and set "
        "AXME_METER_PRICES=/path/to/file.toml, or pass configure(extra_prices=[{...}]).",
        file=sys.stderr,
    )


def _per_million(pico_per_token: int) -> str:
    return f"{to_decimal(pico_per_token * 1_000_000):f}"


def _others(rates: Any) -> str:
    """Non-text units of one entry, compactly."""
    period, parts = rates.period, []
    for name in ("cache_write", "audio_input", "cached_audio_input", "audio_output", "image_input", "cached_image_input", "image_output"):
        if name in period.rates:
            parts.append(f"{name} {_per_million(getattr(rates, name))}/1M")
    if period.per_minute is not None:
        parts.append(f"${to_decimal(period.per_minute):f}/min")
    if period.per_character is not None:
        parts.append(f"${to_decimal(period.per_character * 1_000_000):f}/1M chars")
    if period.images:
        cheapest, dearest = min(period.images.values()), max(period.images.values())
        parts.append(f"${to_decimal(cheapest):f}-${to_decimal(dearest):f}/image")
    if period.long_threshold:
        parts.append(f">{period.long_threshold} input: tier rates")
    tiers = [s for s in ("flex", "priority", "batch", "fine_tuned") if s in period.sets]
    if tiers:
        parts.append("+" + ",".join(tiers))
    return "; ".join(parts)


def _matches(entry: Any, pattern: str | None) -> bool:
    if not pattern:
        return True
    pattern = pattern.lower()
    names = (entry.id, *entry.aliases)
    if any(ch in pattern for ch in "*?["):
        return any(fnmatch.fnmatchcase(n, pattern) for n in names)
    return any(pattern in n for n in names)


def run_prices(args: argparse.Namespace) -> int:
    """List entries (USD per 1M tokens) with the table version."""
    t = _table()
    rows = [("model", "input", "cached", "output", "other", "checked")]
    for entry in sorted(t.entries.values(), key=lambda e: e.id):
        if not _matches(entry, args.pattern):
            continue
        r = t.rates_for(entry.id, at=args.date)
        has_tokens = bool(r.period.rates)
        tok = (lambda v: _per_million(v)) if has_tokens else (lambda v: "-")
        rows.append((entry.id, tok(r.input), tok(r.cached_input), tok(r.output), _others(r), entry.checked))
    print(f"price table {t.version} (USD per 1M tokens)")
    if len(rows) == 1:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:4], widths[1:4])]
        cells += [row[4].ljust(widths[4]), row[5]]
        print("  ".join(cells).rstrip())
    return 0
