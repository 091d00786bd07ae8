"""``axme-meter price`` (cost of one call) and ``axme-meter prices`` (list the table; load files on a gateway).

``prices`` has actions (``list``, ``load``, ``unload``, ``loaded``); a first word that is none of
them is a ``list`` pattern, so ``axme-meter prices 'gpt-5*'`` lists as it always did. Listing and
``price`` are local and offline (this package's table, plus ``AXME_METER_PRICES``); the other
actions act on a gateway, through its database (``--db``) or its API (``--gateway``), like ``keys``.

Plain aligned text only: ``rich`` is not a base dependency.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import difflib
import fnmatch
import json
import os
import sys
from collections.abc import Callable
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
        "prices", help="list the price table; load price files on a gateway",
        description="List the models in the price table (USD per 1M tokens, other units where they apply), "
        "the date each price was checked, and the table version every cost record carries. With an action, "
        "manage the price files a gateway loads over its bundled table (every client of the gateway prices "
        "with them). A first word that is not an action is a 'list' pattern.",
        epilog=examples("axme-meter prices", "axme-meter prices 'gpt-5*'", "axme-meter prices mini --date 2025-06-01",
                        "axme-meter prices load ours.toml --gateway http://127.0.0.1:8787", "axme-meter prices ACTION --help"),
    )
    prices.add_argument("--date", type=_date, help="show the prices in force on this date (YYYY-MM-DD)")
    prices.set_defaults(handler=run_prices, pattern=None)
    actions = prices.add_subparsers(dest="prices_action", metavar="ACTION", action=_ListByDefault)
    listing = actions.add_parser(
        "list", help="list the local price table (the default action)",
        description="List this package's price table (plus AXME_METER_PRICES), offline: the models, their rates "
        "(USD per 1M tokens) and the table version. 'axme-meter prices PATTERN' is the same.",
        epilog=examples("axme-meter prices list", "axme-meter prices list 'gpt-4o*' --date 2025-01-15"),
    )
    listing.add_argument("pattern", nargs="?", help="filter model ids: glob (gpt-4o*) or substring (mini)")
    listing.add_argument("--date", type=_date, default=argparse.SUPPRESS, help="show the prices in force on this date (YYYY-MM-DD)")
    listing.set_defaults(handler=run_prices)
    load = actions.add_parser(
        "load", help="load a price file on a gateway (its clients price with it)",
        description="Load a price file (format: pricing/README.md) on a gateway, over its bundled table: every "
        "replica serves it at /v1/prices, its clients fetch it and price with it, and it prices the calls old "
        "clients could not. A file loaded under the same name is replaced. A bad file (a negative or "
        "non-numeric rate, a rate with no unit, overlapping price histories) is refused and nothing is loaded. "
        "Needs the super-admin key (org '*'); recorded as a prices.loaded event.",
        epilog=examples("axme-meter prices load ours.toml --gateway http://127.0.0.1:8787   # with AXME_API_KEY",
                        "axme-meter prices load /srv/prices/2026-12.toml --name ours.toml --db postgresql://axme@db/axme"),
    )
    load.add_argument("file", metavar="FILE", help="the TOML price file")
    load.add_argument("--name", help="the name to load it under (default: the file's name); the same name replaces it")
    _target_flags(load)
    load.set_defaults(handler=run_load)
    unload = actions.add_parser(
        "unload", help="unload a price file from a gateway",
        description="Drop a price file loaded on a gateway: its models price as the bundled table (and the other "
        "loaded files) say again. Needs the super-admin key; recorded as a prices.unloaded event.",
        epilog=examples("axme-meter prices unload ours.toml --gateway http://127.0.0.1:8787",
                        "axme-meter prices unload ours.toml --db sqlite:////srv/axme/gateway.sqlite3"),
    )
    unload.add_argument("name", metavar="NAME", help="the name it was loaded under ('prices loaded' lists them)")
    _target_flags(unload)
    unload.set_defaults(handler=run_unload)
    loaded = actions.add_parser(
        "loaded", help="show the price files a gateway has loaded, and its pricing_version",
        description="Show a gateway's effective price table: its pricing_version and the files loaded over the "
        "bundled table (name, models, when and by which key).",
        epilog=examples("axme-meter prices loaded --gateway http://127.0.0.1:8787", "axme-meter prices loaded --json"),
    )
    loaded.add_argument("--json", action="store_true", help="print the JSON answer (without the TOML texts)")
    _target_flags(loaded)
    loaded.set_defaults(handler=run_loaded)


class _AnyWord(dict):  # type: ignore[type-arg]
    """The actions, as argparse's choice check sees them: any word is accepted (it may be a pattern).

    It holds the action parsers too, so that whatever lists ``choices`` (help, ``_help.subparsers_of``) sees them."""

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)


class _ListByDefault(argparse._SubParsersAction):  # type: ignore[type-arg]
    """``prices WORD …`` where WORD is no action means ``prices list WORD …``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.choices = _AnyWord()  # argparse's membership check; the parsers are looked up in _name_parser_map

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser = super().add_parser(name, **kwargs)
        self.choices[name] = parser
        return parser

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values and values[0] not in self._name_parser_map:
            values = ["list", *values]
        super().__call__(parser, namespace, values, option_string)


def _target_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="the gateway's database URL (default: $AXME_GATEWAY_DB, else the "
                        "gateway's default SQLite file)")
    parser.add_argument("--gateway", metavar="URL", default=None, help="use a running gateway's /v1/prices instead of "
                        "the database (needs the super-admin key to load)")
    parser.add_argument("--api-key", metavar="KEY", default=None, help="key for --gateway (default: $AXME_API_KEY)")


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


# -- price files on a gateway ------------------------------------------------------------------


def _fail(args: argparse.Namespace, message: str, code: int = 1) -> int:
    print(f"axme-meter prices {args.prices_action}: {message}", file=sys.stderr)
    return code


def _on_gateway(args: argparse.Namespace, over_http: Callable[[Any], Any],
                in_db: Callable[[Any, Any, Any], Any]) -> tuple[Any, int]:
    """Call the gateway's API (``--gateway``) or act on its database; (answer, 0) or (None, exit code) after saying why."""
    if args.gateway and args.db:
        return None, _fail(args, "pass either --db or --gateway, not both", 2)
    if args.gateway:
        from ._api import GatewayAPI, GatewayError

        try:
            with GatewayAPI(args.gateway, args.api_key) as api:
                return over_http(api), 0
        except GatewayError as exc:
            return None, _fail(args, str(exc))
    try:
        from ..gateway._auth import Principal
        from ..gateway._config import Settings
        from ..gateway._db import make_engine, migrate
        from ..gateway._errors import ApiError
    except ModuleNotFoundError as exc:
        return None, _fail(args, f"needs the 'gateway' extra ({exc.name} is missing): pip install 'axme_meter[gateway]'", 2)
    engine = make_engine(Settings.from_env(args.db or os.environ.get("AXME_GATEWAY_DB")).db_url)
    try:
        migrate(engine)
        return in_db(engine, Principal("*", True, None, "cli"), _dt.datetime.now(_dt.timezone.utc)), 0
    except ApiError as exc:
        return None, _fail(args, exc.message)
    finally:
        engine.dispose()


def run_load(args: argparse.Namespace) -> int:
    """Load FILE on the gateway; refused files are explained (model and field) and nothing is loaded."""
    import re
    from pathlib import Path

    path = Path(args.file)
    name = args.name or path.name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        return _fail(args, f"{name!r} cannot name a price file: use letters, digits, '.', '_' and '-' (at most 100), "
                     "e.g. --name ours.toml", 2)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return _fail(args, f"cannot read {args.file}: {exc.strerror or exc}", 2)
    except UnicodeDecodeError:
        return _fail(args, f"{args.file} is not UTF-8 text: save it as UTF-8", 2)
    answer, code = _on_gateway(
        args, lambda api: api.request("POST", "/v1/prices", json={"name": name, "toml": text}),
        lambda engine, who, now: _gateway_commands().load_prices(engine, who, name, text, now))
    if code:
        return code
    verb = "replaced" if answer.get("replaced") else "loaded"
    print(f"{verb} {answer['name']}: {len(answer['models'])} model(s) ({', '.join(answer['models'])})")
    print(f"pricing_version: {answer['pricing_version']}")
    print(f"loaded files: {', '.join(answer['loaded'])}")
    return 0


def run_unload(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    answer, code = _on_gateway(
        args, lambda api: api.request("DELETE", f"/v1/prices/{quote(args.name, safe='')}"),
        lambda engine, who, now: _gateway_commands().unload_prices(engine, who, args.name, now))
    if code:
        return code
    print(f"unloaded {answer['name']}")
    print(f"pricing_version: {answer['pricing_version']}")
    print(f"loaded files: {', '.join(answer['loaded']) or 'none (the bundled table)'}")
    return 0


def run_loaded(args: argparse.Namespace) -> int:
    """The gateway's pricing_version and loaded files (the TOML texts are left out)."""
    answer, code = _on_gateway(args, lambda api: api.request("GET", "/v1/prices"), lambda engine, _who, _now: _table_answer(engine))
    if code:
        return code
    files = [{k: v for k, v in f.items() if k != "toml"} for f in answer.get("files", [])]
    if args.json:
        print(json.dumps({"pricing_version": answer.get("pricing_version"), "files": files}, indent=2, sort_keys=True))
        return 0
    print(f"pricing_version: {answer.get('pricing_version')}")
    for f in files:
        when = f" loaded {f.get('loaded_at')} by {f.get('loaded_by')}" if f.get("source") == "loaded" else ""
        print(f"  {f.get('source', '?'):<8} {f.get('name')}: {len(f.get('models', []))} model(s){when}")
    return 0


def _table_answer(engine: Any) -> Any:
    from ..gateway import _prices

    with engine.connect() as conn:
        return json.loads(_prices.effective(conn).body())


def _gateway_commands() -> Any:
    """Imported only for database access, so ``--gateway`` works without the 'gateway' extra."""
    from ..gateway import _commands

    return _commands
