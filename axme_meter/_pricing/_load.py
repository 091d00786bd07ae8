"""Reading and validating price files: TOML text -> plain entries with pico-dollar ints.

Why a separate module: loading runs once and may use ``Decimal``; the hot path in
``_table`` never does. Every error names the file, the model and the field.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

_MILLION = Decimal(1_000_000)
_PICO = Decimal(10**12)
#: No list price comes near this (USD per 1M tokens, per image, per minute): a typo or a wrong unit.
_MAX_RATE = Decimal(1_000_000)

#: Token dimensions: USD per 1M tokens -> pico-dollars per token.
TOKEN_FIELDS = (
    "input",
    "cached_input",
    "cache_write",
    "cache_write_12h",
    "output",
    "reasoning",
    "audio_input",
    "cached_audio_input",
    "audio_output",
    "image_input",
    "cached_image_input",
    "image_output",
)
RATE_SET_KEYS = ("fine_tuned", "flex", "priority", "batch")
#: Rate sets selected by the response's ``service_tier`` (or the Batch API), as opposed to ``fine_tuned``.
TIER_SETS = ("flex", "priority", "batch")
PERIOD_KEYS = frozenset(
    TOKEN_FIELDS
    + RATE_SET_KEYS
    + ("effective", "long_context", "images", "default_quality", "per_minute", "per_1m_characters", "note")
)
ENTRY_KEYS = frozenset(("id", "aliases", "source", "checked", "prices", "note"))
META_KEYS = frozenset(("provider", "currency", "source", "checked", "batch_discount"))


class PriceFileError(ValueError):
    """A price file or ``extra_prices`` entry is malformed; the message says where and how to fix it.

    ``origin``, ``model`` and ``field`` name the place for machines too (a gateway answers them in its 422).
    """

    def __init__(self, message: str, *, origin: str = "", model: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.origin = origin
        self.model = model
        self.field = field


@dataclass(slots=True)
class Period:
    """One price period of a model: rates in pico-dollars, in force from ``effective_day`` on."""

    effective_day: int
    rates: dict[str, int]
    sets: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Per tier: requests with more input tokens than this are served, and billed, at standard rates.
    max_input: dict[str, int] = field(default_factory=dict)
    long_threshold: int | None = None
    long_rates: dict[str, int] = field(default_factory=dict)
    #: Published long-context rates of a tier that differ from the scaled ones (rounded figures).
    long_sets: dict[str, dict[str, int]] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)
    default_quality: str | None = None
    #: Pico-dollars per minute of audio (billed by the second, see ``_table``).
    per_minute: int | None = None
    per_character: int | None = None


@dataclass(slots=True)
class ModelEntry:
    """One model: id, aliases, provenance and its price history (sorted by effective day)."""

    id: str
    aliases: tuple[str, ...]
    source: str
    checked: str
    periods: list[Period]
    origin: str
    batch_discount: Decimal | None = None
    note: str = ""


@dataclass(slots=True)
class PriceFile:
    origin: str
    provider: str
    checked: str
    entries: list[ModelEntry]
    raw: bytes


def _err(origin: str, model: str | None, fld: str, problem: str, fix: str) -> PriceFileError:
    where = f"{origin}: model {model!r}" if model else origin
    return PriceFileError(f"{where}, field {fld!r}: {problem}. Fix: {fix}", origin=origin, model=model, field=fld)


#: What a period's field names mean: the name of a rate is its unit.
_UNITS = ("input, output, cached_input, ... are USD per 1M tokens; per_minute is USD per audio minute; "
          "per_1m_characters USD per 1M characters; images = { \"1024x1024\" = \"0.04\" } USD per image")


def _decimal(value: Any, origin: str, model: str, fld: str) -> Decimal:
    if not isinstance(value, str):
        raise _err(origin, model, fld, f"rates must be decimal strings, got {value!r}", f'write it quoted, e.g. {fld} = "2.50"')
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise _err(origin, model, fld, f"{value!r} is not a decimal number", 'use a plain number such as "2.50"') from None
    if not amount.is_finite() or amount < 0:
        raise _err(origin, model, fld, f"{value!r} must be a finite number >= 0", 'use a plain number such as "2.50"')
    if amount > _MAX_RATE:
        raise _err(origin, model, fld, f"{value!r} is more than {_MAX_RATE} USD per unit", "check the value and its unit")
    return amount


def _exact(amount: Decimal, origin: str, model: str, fld: str, unit: str) -> int:
    if amount != amount.to_integral_value():
        raise _err(
            origin, model, fld,
            f"the rate is {amount} pico-dollars per {unit}, not a whole number",
            "check the value; prices must be whole pico-dollars (1e-12 USD) per unit",
        )
    return int(amount)


def token_rate(value: Any, origin: str, model: str, fld: str) -> int:
    """USD per 1M tokens (string) -> pico-dollars per token; refuses inexact rates."""
    return _exact(_decimal(value, origin, model, fld) * _PICO / _MILLION, origin, model, fld, "token")


def _rate_map(raw: Any, origin: str, model: str, fld: str, *, extra: frozenset[str] = frozenset()) -> dict[str, int]:
    if not isinstance(raw, Mapping):
        raise _err(origin, model, fld, "expected a table of rates", f'write {fld} = {{ input = "1.00", output = "2.00" }}')
    rates: dict[str, int] = {}
    for key, value in raw.items():
        if key in extra:
            continue
        if key not in TOKEN_FIELDS:
            raise _err(origin, model, f"{fld}.{key}", "unknown rate name", f"use one of {', '.join(TOKEN_FIELDS)}")
        rates[key] = token_rate(value, origin, model, f"{fld}.{key}")
    return rates


def _positive_int(value: Any, origin: str, model: str, fld: str, fix: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise _err(origin, model, fld, f"{value!r} is not a positive whole number", fix)
    return value


def _tier_set(raw: Any, origin: str, model: str, fld: str, name: str, period: Period) -> None:
    """One ``flex`` / ``priority`` / ``batch`` / ``fine_tuned`` set, with its optional ``max_input_tokens``."""
    period.sets[name] = _rate_map(raw, origin, model, fld, extra=frozenset({"max_input_tokens"}))
    if isinstance(raw, Mapping) and "max_input_tokens" in raw:
        period.max_input[name] = _positive_int(
            raw["max_input_tokens"], origin, model, f"{fld}.max_input_tokens", "write max_input_tokens = 128000 (input tokens)"
        )


def _long_context(raw: Any, origin: str, model: str, fld: str, period: Period) -> None:
    """``long_context = { threshold, <rates>, flex = {...}, batch = {...} }``."""
    threshold = raw.get("threshold") if isinstance(raw, Mapping) else None
    period.long_threshold = _positive_int(threshold, origin, model, f"{fld}.threshold", "add threshold = 272000 (input tokens)")
    period.long_rates = _rate_map(raw, origin, model, fld, extra=frozenset({"threshold", *TIER_SETS}))
    for name in TIER_SETS:
        if name in raw:
            period.long_sets[name] = _rate_map(raw[name], origin, model, f"{fld}.{name}")


def _day(value: Any, origin: str, model: str, fld: str) -> int:
    """A date (TOML date or 'YYYY-MM-DD') -> days since 1970-01-01."""
    if isinstance(value, str):
        try:
            value = _dt.date.fromisoformat(value)
        except ValueError:
            raise _err(origin, model, fld, f"{value!r} is not a date", "write YYYY-MM-DD, e.g. 2026-11-28") from None
    if isinstance(value, _dt.datetime) or not isinstance(value, _dt.date):
        raise _err(origin, model, fld, f"{value!r} is not a date", "write YYYY-MM-DD, e.g. 2026-11-28")
    return (value - _dt.date(1970, 1, 1)).days


def _period(raw: Any, origin: str, model: str, index: int) -> Period:
    where = f"prices[{index}]"
    if not isinstance(raw, Mapping):
        raise _err(origin, model, where, "expected a table", "add [[models.prices]] with effective = ... and rates")
    for key in raw:
        if key not in PERIOD_KEYS:
            if isinstance(raw[key], (str, int, float)) and not isinstance(raw[key], bool):
                raise _err(origin, model, f"{where}.{key}", "unknown field: not a rate name, so this rate has no unit",
                           f"name the rate by what it bills ({_UNITS})")
            raise _err(origin, model, f"{where}.{key}", "unknown field", f"use one of {', '.join(sorted(PERIOD_KEYS))}")
    if "effective" not in raw:
        raise _err(origin, model, f"{where}.effective", "missing", "add effective = \"YYYY-MM-DD\" (the date this price starts)")
    period = Period(
        effective_day=_day(raw["effective"], origin, model, f"{where}.effective"),
        rates={k: token_rate(raw[k], origin, model, f"{where}.{k}") for k in TOKEN_FIELDS if k in raw},
    )
    for name in RATE_SET_KEYS:
        if name in raw:
            _tier_set(raw[name], origin, model, f"{where}.{name}", name, period)
    if "long_context" in raw:
        _long_context(raw["long_context"], origin, model, f"{where}.long_context", period)
    if "images" in raw:
        images = raw["images"]
        if not isinstance(images, Mapping):
            raise _err(origin, model, f"{where}.images", "expected a table", 'write images = { "standard:1024x1024" = "0.04" }')
        period.images = {
            str(k).lower(): _exact(_decimal(v, origin, model, f"{where}.images.{k}") * _PICO, origin, model, f"{where}.images.{k}", "image")
            for k, v in images.items()
        }
    if "default_quality" in raw:
        period.default_quality = str(raw["default_quality"]).lower()
    if "per_minute" in raw:
        fld = f"{where}.per_minute"
        period.per_minute = _exact(_decimal(raw["per_minute"], origin, model, fld) * _PICO, origin, model, fld, "minute")
    if "per_1m_characters" in raw:
        fld = f"{where}.per_1m_characters"
        period.per_character = _exact(_decimal(raw["per_1m_characters"], origin, model, fld) * _PICO / _MILLION, origin, model, fld, "character")
    if not (period.rates or period.sets or period.long_rates or period.images or period.per_minute is not None
            or period.per_character is not None):
        raise _err(origin, model, where, "no rate: this period prices nothing",
                   f'give at least one rate, named by its unit ({_UNITS}), e.g. input = "2.50"')
    return period


def parse_entry(raw: Any, origin: str, batch_discount: Decimal | None, default_checked: str) -> ModelEntry:
    """One model entry (a ``[[models]]`` table or an ``extra_prices`` dict) -> :class:`ModelEntry`."""
    if not isinstance(raw, Mapping):
        raise _err(origin, None, "models", f"each model must be a table, got {type(raw).__name__}", "see pricing/README.md")
    model = raw.get("id")
    if not isinstance(model, str) or not model.strip():
        raise _err(origin, None, "id", "a model entry has no id", 'add id = "model-name"')
    for key in raw:
        if key not in ENTRY_KEYS:
            raise _err(origin, model, key, "unknown field", f"use one of {', '.join(sorted(ENTRY_KEYS))}; rates go under [[models.prices]]")
    aliases = raw.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise _err(origin, model, "aliases", "expected a list of strings", 'write aliases = ["other-name"]')
    prices = raw.get("prices")
    if not isinstance(prices, list) or not prices:
        raise _err(origin, model, "prices", "missing or empty", 'add at least one [[models.prices]] with effective = "YYYY-MM-DD" and rates')
    periods = sorted((_period(p, origin, model, i) for i, p in enumerate(prices)), key=lambda p: p.effective_day)
    for before, after in zip(periods, periods[1:]):
        if before.effective_day == after.effective_day:
            day = _dt.date(1970, 1, 1) + _dt.timedelta(days=after.effective_day)
            raise _err(origin, model, "prices", f"two periods start on {day}", "give each [[models.prices]] its own effective date")
    checked = raw.get("checked", default_checked)
    if checked:
        _day(checked, origin, model, "checked")
    return ModelEntry(
        id=model.strip().lower(),
        aliases=tuple(a.strip().lower() for a in aliases),
        source=str(raw.get("source", "")),
        checked=str(checked or ""),
        periods=periods,
        origin=origin,
        batch_discount=batch_discount,
        note=str(raw.get("note", "")),
    )


def parse_file(path: Path) -> PriceFile:
    """Read one provider file; errors name the file and say how to fix it."""
    origin = str(path)
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise PriceFileError(f"{origin}: cannot read the price file ({exc.strerror}). Fix: point AXME_METER_PRICES at a readable TOML file") from None
    return parse_bytes(raw_bytes, origin)


def parse_bytes(raw_bytes: bytes, origin: str) -> PriceFile:
    """Parse and validate a price file's bytes (from disk or, e.g., an upload); ``origin`` names it in errors."""
    import tomllib  # lazy: only loading a table needs it, ``import axme_meter`` does not

    try:
        data = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PriceFileError(f"{origin}: not valid TOML ({exc}). Fix: see pricing/README.md for the format",
                             origin=origin) from None
    except RecursionError:
        raise PriceFileError(f"{origin}: not valid TOML (nested too deeply). Fix: see pricing/README.md for the format",
                             origin=origin) from None
    meta = data.get("meta", {})
    if not isinstance(meta, Mapping):
        raise _err(origin, None, "meta", "expected a table", "write [meta] with provider, currency, source, checked")
    for key in meta:
        if key not in META_KEYS:
            raise _err(origin, None, f"meta.{key}", "unknown field", f"use one of {', '.join(sorted(META_KEYS))}")
    for key in data:
        if key not in ("meta", "models"):
            raise _err(origin, None, key, "unknown top-level field", "only [meta] and [[models]] are allowed")
    if meta.get("currency", "USD") != "USD":
        raise _err(origin, None, "meta.currency", f"{meta['currency']!r} is not supported", 'prices must be in USD: currency = "USD"')
    discount = _decimal(meta["batch_discount"], origin, "meta", "batch_discount") if "batch_discount" in meta else None
    checked = str(meta.get("checked", ""))
    if checked:
        _day(checked, origin, None, "meta.checked")  # type: ignore[arg-type]
    models = data.get("models", [])
    if not isinstance(models, list):
        raise _err(origin, None, "models", "expected [[models]] entries", "write each model as a [[models]] table")
    entries = [parse_entry(m, origin, discount, checked) for m in models]
    _check_names(entries, origin)
    if discount is not None:
        for entry in entries:
            _check_discount(entry, discount, origin)
    return PriceFile(origin, str(meta.get("provider", Path(origin).stem)), checked, entries, raw_bytes)


def _check_names(entries: list[ModelEntry], origin: str) -> None:
    """One entry per model name in a file: two entries for one name would be two overlapping price histories."""
    owner: dict[str, int] = {}
    for index, entry in enumerate(entries):
        for name, fld in [(entry.id, "id"), *((alias, "aliases") for alias in entry.aliases)]:
            other = owner.setdefault(name, index)
            if other != index:
                first = entries[other].id
                what = "two [[models]] entries" if first == entry.id else f"this entry and {first!r}"
                raise _err(origin, entry.id, fld, f"{name!r} is priced by {what}: their price histories overlap",
                           "keep one entry per model, with one [[models.prices]] period per price change")


def _check_discount(entry: ModelEntry, discount: Decimal, origin: str) -> None:
    """Batch prices derived from ``batch_discount`` must also be whole pico-dollars per token."""
    for i, period in enumerate(entry.periods):
        if "batch" in period.sets:
            continue
        for name, rate in list(period.rates.items()) + list(period.long_rates.items()):
            _exact(Decimal(rate) * discount, origin, entry.id, f"prices[{i}].{name} x meta.batch_discount", "token")
