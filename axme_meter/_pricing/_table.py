"""The price table and the quote hot path.

Why this shape: loading (TOML, ``Decimal``, validation) happens once in ``_load``;
``quote`` is integer arithmetic on pre-converted pico-dollar rates behind two dict
look-ups (model name -> entry, and (model, day, tier) -> effective rates).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from time import time as _now
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from .. import _config
from ._load import Entry, Period, PriceFile, PriceFileError, parse_entry, parse_file
from ._usage import Usage

__all__ = ["PriceFileError", "PriceTable", "Quote", "bundled_dir", "reload_table", "table"]

#: ``-YYYY-MM-DD`` (new snapshots) or ``-MMDD`` (old ones such as gpt-4-0613).
_DATED = re.compile(r"^(?P<base>.+?)-(?:\d{4}-\d{2}-\d{2}|(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))$")
_STANDARD_TIERS = frozenset({None, "", "default", "auto", "scale", "standard"})
_DEFAULT_QUALITIES = frozenset({None, "", "auto", "standard"})
_DAY = 86400
_CACHE_LIMIT = 50_000


@dataclass(slots=True)
class Quote:
    """The price of one call. ``breakdown`` sums exactly to ``cost_pico``."""

    cost_pico: int
    model: str
    priced: bool
    breakdown: dict[str, int]
    version: str
    reason: str | None = None


@dataclass(slots=True)
class _Rates:
    """Effective pico-dollar rates for one (model, day, tier): defaults already filled in."""

    entry_id: str
    input: int
    cached_input: int
    cache_write: int
    cache_write_12h: int
    output: int
    reasoning: int
    audio_input: int
    audio_output: int
    image_input: int
    image_output: int
    period: Period
    long_threshold: int | None = None
    long: _Rates | None = None


def _fill(entry_id: str, rates: Mapping[str, int], period: Period) -> _Rates:
    """Apply the documented defaults (cached -> input, reasoning -> output, ...)."""
    inp = rates.get("input", 0)
    out = rates.get("output", 0)
    cache_write = rates.get("cache_write", inp)
    return _Rates(
        entry_id=entry_id,
        input=inp,
        cached_input=rates.get("cached_input", inp),
        cache_write=cache_write,
        cache_write_12h=rates.get("cache_write_12h", cache_write),
        output=out,
        reasoning=rates.get("reasoning", out),
        audio_input=rates.get("audio_input", inp),
        audio_output=rates.get("audio_output", out),
        image_input=rates.get("image_input", inp),
        image_output=rates.get("image_output", out),
        period=period,
    )


def _discounted(rates: Mapping[str, int], discount: Decimal) -> dict[str, int]:
    return {k: int((Decimal(v) * discount).to_integral_value(rounding=ROUND_HALF_EVEN)) for k, v in rates.items()}


def _priced_rates(period: Period, *, fine_tuned: bool, tier: str, long: bool, discount: Decimal | None) -> dict[str, int]:
    """Merge the period's base rates with its fine-tune, long-context and tier/batch sets."""
    standard = dict(period.rates)
    if fine_tuned and "fine_tuned" in period.sets:
        standard.update(period.sets["fine_tuned"])
    rates = dict(standard)
    if long:
        rates.update(period.long_rates)
    if tier == "batch" and "batch" not in period.sets:
        return _discounted(rates, discount) if discount is not None else rates
    if tier in period.sets and tier != "fine_tuned":
        tier_rates = period.sets[tier]
        if long:  # the long-context surcharge scales the tier's own rates by the same factor
            tier_rates = {k: _scaled(v, period.long_rates.get(k), standard.get(k)) for k, v in tier_rates.items()}
        rates.update(tier_rates)
    return rates


def _scaled(tier_rate: int, long_rate: int | None, standard_rate: int | None) -> int:
    """``tier_rate * long/standard`` rounded half-even to a whole pico-dollar."""
    if not long_rate or not standard_rate:
        return tier_rate
    return int((Decimal(tier_rate) * long_rate / standard_rate).to_integral_value(rounding=ROUND_HALF_EVEN))


class PriceTable:
    """All loaded price entries; ``quote`` prices a :class:`Usage` in pico-dollars."""

    def __init__(self, files: Iterable[PriceFile], extra: Iterable[Entry] = (), *, extra_fingerprint: bytes = b"") -> None:
        files = list(files)
        extra = list(extra)
        self.files = files
        self.default_discount: Decimal | None = next((e.batch_discount for f in files for e in f.entries if e.batch_discount), None)
        self.entries: dict[str, Entry] = {}
        for entry in [e for f in files for e in f.entries] + extra:
            self.entries.pop(entry.id, None)  # an override moves to the end: it wins name clashes
            self.entries[entry.id] = entry
        self._names: dict[str, str] = {}
        for entry in self.entries.values():
            for alias in entry.aliases:
                self._names[alias] = entry.id
        for entry in self.entries.values():
            self._names[entry.id] = entry.id
        self.version = self._make_version(files, extra, extra_fingerprint)
        self._resolved: dict[str, tuple[str, bool] | None] = {}
        self._rates: dict[tuple[str, int, str], _Rates] = {}

    # -- identity -----------------------------------------------------------------------------

    def _make_version(self, files: list[PriceFile], extra: list[Entry], fingerprint: bytes) -> str:
        """``<provider>-<newest checked date>+sha256:<12 hex>`` over every loaded byte of price data."""
        digest = hashlib.sha256()
        for f in files:
            digest.update(f.raw)
            digest.update(b"\0")
        digest.update(fingerprint)
        checked = [f.checked for f in files] + [e.checked for e in self.entries.values()]
        newest = max((c for c in checked if c), default="undated")
        provider = files[0].provider if files else "custom"
        return f"{provider}-{newest}+sha256:{digest.hexdigest()[:12]}"

    # -- model matching -----------------------------------------------------------------------

    def _lookup(self, model: str) -> tuple[str, bool] | None:
        """Exact id/alias, then ``ft:base:...`` at fine-tune rates, then a dated snapshot's base."""
        name = model.strip().lower()
        fine_tuned = False
        if name.startswith("ft:"):
            name = name.split(":")[1] if name.count(":") >= 1 else ""
            fine_tuned = True
        hit = self._names.get(name)
        if hit is None:
            match = _DATED.match(name)
            if match:
                hit = self._names.get(match.group("base"))
        return (hit, fine_tuned) if hit is not None else None

    def _resolve(self, model: str) -> tuple[str, bool] | None:
        try:
            return self._resolved[model]
        except KeyError:
            pass
        found = self._lookup(model) if isinstance(model, str) else None
        if len(self._resolved) > _CACHE_LIMIT:
            self._resolved.clear()
        self._resolved[model] = found
        return found

    def resolve(self, model: str) -> str | None:
        """The entry id that prices ``model``, or ``None`` when the table does not know it."""
        found = self._resolve(model)
        return found[0] if found else None

    def is_free(self, model: str) -> bool:
        """True when every rate of every period of the model is zero (e.g. moderations)."""
        found = self._resolve(model)
        if not found:
            return False
        for period in self.entries[found[0]].periods:
            amounts = list(period.rates.values()) + list(period.long_rates.values()) + list(period.images.values())
            amounts += [v for s in period.sets.values() for v in s.values()]
            amounts += [period.per_minute or 0, period.per_character or 0]
            if any(amounts):
                return False
        return True

    # -- rates --------------------------------------------------------------------------------

    def _period(self, entry: Entry, day: int) -> Period:
        """The period in force on ``day``; calls before the first period use the first one."""
        days = [p.effective_day for p in entry.periods]
        return entry.periods[max(0, bisect_right(days, day) - 1)]

    def _build_rates(self, found: tuple[str, bool], day: int, tier: str) -> _Rates:
        entry = self.entries[found[0]]
        period = self._period(entry, day)
        discount = entry.batch_discount if entry.batch_discount is not None else self.default_discount
        rates = _fill(entry.id, _priced_rates(period, fine_tuned=found[1], tier=tier, long=False, discount=discount), period)
        if period.long_threshold is not None:
            rates.long_threshold = period.long_threshold
            rates.long = _fill(entry.id, _priced_rates(period, fine_tuned=found[1], tier=tier, long=True, discount=discount), period)
        return rates

    def rates_for(self, model: str, *, at: float | None = None, service_tier: str | None = None, batch: bool = False) -> _Rates | None:
        """Effective rates (for listings and the CLI); ``None`` for an unknown model."""
        found = self._resolve(model)
        if not found:
            return None
        day = int((_now() if at is None else at) // _DAY)
        return self._build_rates(found, day, _tier_key(service_tier, batch))

    # -- the hot path -------------------------------------------------------------------------

    def quote(
        self,
        model: str,
        usage: Usage,
        at: float | None = None,
        service_tier: str | None = None,
        batch: bool = False,
    ) -> Quote:
        """Price ``usage`` for ``model``; never raises for unknown models (``priced=False``)."""
        found = self._resolved.get(model, False)
        if found is False:
            found = self._resolve(model)
        if found is None:
            return Quote(0, model, False, {}, self.version, f"unknown model {model!r}")
        day = int((_now() if at is None else at) // _DAY)
        tier = "batch" if batch else ("" if service_tier in _STANDARD_TIERS else _tier_key(service_tier, False))
        key = (model, day, tier)
        rates = self._rates.get(key)
        if rates is None:
            rates = self._build_rates(found, day, tier)
            if len(self._rates) > _CACHE_LIMIT:
                self._rates.clear()
            self._rates[key] = rates
        if rates.long is not None and usage.input_tokens > rates.long_threshold:  # type: ignore[operator]
            rates = rates.long
        return _price(rates, usage, self.version)


def _tier_key(service_tier: str | None, batch: bool) -> str:
    """Batch wins; flex/priority use their rate sets; anything else is standard."""
    if batch or service_tier == "batch":
        return "batch"
    return "" if service_tier in _STANDARD_TIERS or service_tier is None else str(service_tier)


def _price(r: _Rates, u: Usage, version: str) -> Quote:
    """Integer arithmetic only: tokens x pico-per-token, plus per-unit charges."""
    bd: dict[str, int] = {}
    tokens = u.input_tokens or u.output_tokens
    text_in = u.input_tokens - u.cached_tokens - u.cache_write_tokens - u.audio_input_tokens - u.image_input_tokens
    if text_in > 0:
        bd["input"] = text_in * r.input
    if u.cached_tokens:
        bd["cached_input"] = u.cached_tokens * r.cached_input
    if u.cache_write_tokens:
        long_ttl = u.cache_write_12h_tokens
        if long_ttl:
            bd["cache_write_12h"] = long_ttl * r.cache_write_12h
        if u.cache_write_tokens - long_ttl:
            bd["cache_write"] = (u.cache_write_tokens - long_ttl) * r.cache_write
    if u.audio_input_tokens:
        bd["audio_input"] = u.audio_input_tokens * r.audio_input
    if u.image_input_tokens:
        bd["image_input"] = u.image_input_tokens * r.image_input
    if u.output_tokens:
        text_out = u.output_tokens - u.reasoning_tokens - u.audio_output_tokens - u.image_output_tokens
        if text_out > 0:
            bd["output"] = text_out * r.output
        if u.reasoning_tokens:
            bd["reasoning"] = u.reasoning_tokens * r.reasoning
        if u.audio_output_tokens:
            bd["audio_output"] = u.audio_output_tokens * r.audio_output
        if u.image_output_tokens:
            bd["image_output"] = u.image_output_tokens * r.image_output
    if not tokens and (u.images or u.audio_seconds or u.characters):
        reason = _per_unit(r, u, bd)
        if reason:
            return Quote(0, r.entry_id, False, {}, version, reason)
    return Quote(sum(bd.values()), r.entry_id, True, bd, version)


def _per_unit(r: _Rates, u: Usage, bd: dict[str, int]) -> str | None:
    """Per-image, per-second and per-character charges; returns why it can't price, if so."""
    period = r.period
    if u.images:
        price = _image_price(period, u.image_size, u.image_quality)
        if price is None:
            return f"no per-image price for size {u.image_size or '?'} quality {u.image_quality or 'default'} of {r.entry_id!r}"
        bd["images"] = u.images * price
    if u.audio_seconds:
        if period.per_minute is None:
            return f"no per-minute audio price for {r.entry_id!r}"
        bd["audio_seconds"] = math.ceil(u.audio_seconds) * period.per_minute
    if u.characters:
        if period.per_character is None:
            return f"no per-character price for {r.entry_id!r}"
        bd["characters"] = u.characters * period.per_character
    return None


def _image_price(period: Period, size: str | None, quality: str | None) -> int | None:
    if not period.images:
        return None
    size = (size or "1024x1024").lower()
    quality = quality.lower() if quality else None
    candidates = [f"{quality}:{size}"] if quality else []
    if quality in _DEFAULT_QUALITIES and period.default_quality:
        candidates.append(f"{period.default_quality}:{size}")
    candidates.append(size)
    for key in candidates:
        price = period.images.get(key)
        if price is not None:
            return price
    return None


# -- the process-wide table -------------------------------------------------------------------

_lock = threading.Lock()
_table: PriceTable | None = None
_built_from: tuple[Any, ...] | None = None


def bundled_dir() -> Path:
    """``axme_meter/_pricing/data`` in a wheel, ``<repo>/pricing`` in a source checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "data"
    return packaged if packaged.is_dir() else here.parents[1] / "pricing"


def _settings_key() -> tuple[Any, ...]:
    s = _config.settings
    return (s.prices, id(s.extra_prices), len(s.extra_prices))


def load_table(prices: Path | None = None, extra_prices: Iterable[Mapping[str, Any]] = ()) -> PriceTable:
    """Bundled files, then the user's file, then in-code entries (later ids override earlier)."""
    files = [parse_file(p) for p in sorted(bundled_dir().glob("*.toml"))]
    if prices is not None:
        files.append(parse_file(Path(prices)))
    extra_list = list(extra_prices)
    extra = [parse_entry(raw, f"extra_prices[{i}]", None, "") for i, raw in enumerate(extra_list)]
    fingerprint = json.dumps(extra_list, sort_keys=True, default=str).encode() if extra_list else b""
    return PriceTable(files, extra, extra_fingerprint=fingerprint)


def table() -> PriceTable:
    """The process-wide table, loaded on first use and cached until settings change."""
    global _table, _built_from
    current = _table
    if current is not None:
        return current
    with _lock:
        if _table is None:
            s = _config.settings
            _table = load_table(s.prices, s.extra_prices)
            _built_from = _settings_key()
        return _table


def reload_table() -> None:
    """Drop the cached table; the next ``table()`` reloads every file."""
    global _table, _built_from
    with _lock:
        _table = None
        _built_from = None


def _on_settings_change(_settings: Any) -> None:
    if _table is not None and _settings_key() != _built_from:
        reload_table()


_config.on_change(_on_settings_change)
