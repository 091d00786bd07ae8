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
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from .. import _config
from ._load import ModelEntry, Period, PriceFile, PriceFileError, parse_entry, parse_file
from ._usage import Usage

__all__ = ["PriceFileError", "PriceTable", "Quote", "bundled_dir", "bundled_files", "forget_gateway_table", "gateway_version",
           "install_gateway_table", "reload_table", "table"]

#: ``<name>-YYYY-MM-DD``: a dated snapshot priced by its ``<name>`` entry unless it has its own.
#: Old ``-MMDD`` snapshots (gpt-3.5-turbo-0613) were priced per snapshot, so they never fall back:
#: they resolve only through their own entry or an alias.
_DATED = re.compile(r"^(?P<base>.+?)-\d{4}-\d{2}-\d{2}$")
_STANDARD_TIERS = frozenset({None, "", "default", "auto", "standard"})
#: Other names OpenAI has reported for a tier ("fast" is priority processing's later name).
_TIER_ALIASES = {"fast": "priority"}
_DEFAULT_QUALITIES = frozenset({None, "", "auto", "standard"})
_DAY = 86400
_CACHE_LIMIT = 50_000


@dataclass(slots=True)
class Quote:
    """The price of one call. ``breakdown`` sums exactly to ``cost_pico``.

    ``estimated`` is set when the call was priced with rates the table does not have for
    it (a ``service_tier`` without its own rates is priced at standard rates); ``reason``
    then says why.
    """

    cost_pico: int
    model: str
    priced: bool
    breakdown: dict[str, int]
    version: str
    reason: str | None = None
    estimated: bool = False


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
    cached_audio_input: int
    audio_output: int
    image_input: int
    cached_image_input: int
    image_output: int
    period: Period
    long_threshold: int | None = None
    long: _Rates | None = None
    #: The tier excludes requests above this many input tokens; they pay ``over_max`` (standard).
    max_input: int | None = None
    over_max: _Rates | None = None
    estimated: str | None = None  # why, when these are stand-in rates
    unit_only: bool = False  # the period has per-unit prices only: token usage cannot be priced


def _fill(entry_id: str, rates: Mapping[str, int], period: Period) -> _Rates:
    """Apply the documented defaults (cached -> input, reasoning -> output, ...)."""
    inp = rates.get("input", 0)
    out = rates.get("output", 0)
    cached = rates.get("cached_input", inp)
    cache_write = rates.get("cache_write", inp)
    audio_in = rates.get("audio_input", inp)
    image_in = rates.get("image_input", inp)
    has_cache_rate = "cached_input" in rates
    return _Rates(
        entry_id=entry_id,
        input=inp,
        cached_input=cached,
        cache_write=cache_write,
        cache_write_12h=rates.get("cache_write_12h", cache_write),
        output=out,
        reasoning=rates.get("reasoning", out),
        audio_input=audio_in,
        # A cached audio/image token pays the text cached rate unless the table gives its own;
        # a model with no cache discount at all pays the full modality rate.
        cached_audio_input=rates.get("cached_audio_input", cached if has_cache_rate else audio_in),
        audio_output=rates.get("audio_output", out),
        image_input=image_in,
        cached_image_input=rates.get("cached_image_input", cached if has_cache_rate else image_in),
        image_output=rates.get("image_output", out),
        period=period,
        unit_only=not period.rates and not period.sets,
    )


def _discounted(rates: Mapping[str, int], discount: Decimal) -> dict[str, int]:
    return {k: int((Decimal(v) * discount).to_integral_value(rounding=ROUND_HALF_EVEN)) for k, v in rates.items()}


def _priced_rates(period: Period, *, fine_tuned: bool, tier: str, long: bool, discount: Decimal | None) -> dict[str, int]:
    """Merge the period's base rates with its fine-tune, long-context and tier/batch sets.

    ``tier`` is ``""`` (standard) or a tier the period can price (see ``_tier_available``).
    """
    standard = dict(period.rates)
    if fine_tuned and "fine_tuned" in period.sets:
        standard.update(period.sets["fine_tuned"])
    rates = dict(standard)
    if long:
        rates.update(period.long_rates)
    if tier == "batch" and (fine_tuned or "batch" not in period.sets):
        # A period's explicit batch set prices the base model; fine-tunes take the discount,
        # on the same rates that set discounts (pre-GPT-5 Batch tables list no cached rate).
        if discount is not None:
            listed = period.sets.get("batch")
            discounted = _discounted(rates, discount)
            rates = {k: (discounted[k] if listed is None or k in listed else v) for k, v in rates.items()}
    elif tier:
        tier_rates = period.sets[tier]
        if long:  # the long-context surcharge scales the tier's own rates by the same factor
            tier_rates = {k: _scaled(v, period.long_rates.get(k), standard.get(k)) for k, v in tier_rates.items()}
        rates.update(tier_rates)
    if long and tier in period.long_sets:  # published long-context tier figures win over scaled ones
        rates.update(period.long_sets[tier])
    return rates


def _tier_available(period: Period, tier: str, fine_tuned: bool) -> bool:
    """Whether the table has rates for ``tier`` in this period (batch always has: the discount)."""
    if tier == "batch":
        return True
    return not fine_tuned and tier in period.sets


def _scaled(tier_rate: int, long_rate: int | None, standard_rate: int | None) -> int:
    """``tier_rate * long/standard`` rounded half-even to a whole pico-dollar."""
    if not long_rate or not standard_rate:
        return tier_rate
    return int((Decimal(tier_rate) * long_rate / standard_rate).to_integral_value(rounding=ROUND_HALF_EVEN))


class PriceTable:
    """All loaded price entries; ``quote`` prices a :class:`Usage` in pico-dollars.

    Built from parsed files (``bundled_files()``, ``parse_bytes(...)``) plus in-code entries,
    so any process holding token counts (the client, a gateway) can price them the same way.
    """

    def __init__(self, files: Iterable[PriceFile], extra: Iterable[ModelEntry] = (), *, extra_fingerprint: bytes = b"") -> None:
        files = list(files)
        extra = list(extra)
        self.files = files
        self.default_discount: Decimal | None = next((e.batch_discount for f in files for e in f.entries if e.batch_discount), None)
        self.entries: dict[str, ModelEntry] = {}
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

    def _make_version(self, files: list[PriceFile], extra: list[ModelEntry], fingerprint: bytes) -> str:
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

    def _period(self, entry: ModelEntry, day: int) -> Period:
        """The period in force on ``day``; calls before the first period use the first one."""
        days = [p.effective_day for p in entry.periods]
        return entry.periods[max(0, bisect_right(days, day) - 1)]

    def _build_rates(self, found: tuple[str, bool], day: int, tier: str) -> _Rates:
        """Rates for one (entry, day, tier); a tier without rates falls back to standard, flagged."""
        entry = self.entries[found[0]]
        period = self._period(entry, day)
        fine_tuned = found[1]
        if tier and not _tier_available(period, tier, fine_tuned):
            rates = self._build_rates(found, day, "")
            what = "fine-tuned models" if fine_tuned and tier in period.sets else entry.id
            reason = f"no {tier!r} rates for {what} in the price table; priced at standard rates"
            return _flagged(rates, reason)
        rates = self._rates_for_tier(entry, period, fine_tuned, tier)
        limit = period.max_input.get(tier) if tier else None
        if limit is not None:  # e.g. priority excludes long prompts: those are served (and billed) as standard
            rates.max_input = limit
            rates.over_max = self._rates_for_tier(entry, period, fine_tuned, "")
        return rates

    def _rates_for_tier(self, entry: ModelEntry, period: Period, fine_tuned: bool, tier: str) -> _Rates:
        discount = entry.batch_discount if entry.batch_discount is not None else self.default_discount
        rates = _fill(entry.id, _priced_rates(period, fine_tuned=fine_tuned, tier=tier, long=False, discount=discount), period)
        if period.long_threshold is not None:
            rates.long_threshold = period.long_threshold
            rates.long = _fill(entry.id, _priced_rates(period, fine_tuned=fine_tuned, tier=tier, long=True, discount=discount), period)
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
        requests: int = 1,
    ) -> Quote:
        """Price ``usage`` for ``model``; never raises for unknown models (``priced=False``).

        ``at`` is the call's time (epoch seconds; the price period in force that UTC day),
        ``service_tier`` the tier the response reports, ``batch`` the Batch API.
        ``requests``: ``usage`` adds up that many requests (a gateway pricing a heartbeat's
        per-model totals); per-request thresholds (long context, a tier's ``max_input_tokens``)
        then apply to the average request.
        """
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
        if rates.max_input is not None and usage.input_tokens > rates.max_input * requests:
            rates = rates.over_max  # type: ignore[assignment]
        if rates.long is not None and usage.input_tokens > rates.long_threshold * requests:  # type: ignore[operator]
            rates = rates.long
        return _price(rates, usage, self.version)


def _flagged(rates: _Rates, reason: str) -> _Rates:
    """Mark stand-in rates (and their long-context twin) as estimated, with the reason."""
    rates.estimated = reason
    if rates.long is not None:
        rates.long.estimated = reason
    return rates


def _tier_key(service_tier: str | None, batch: bool) -> str:
    """Batch wins; standard names map to ``""``; other names are kept (known or not)."""
    if batch or service_tier == "batch":
        return "batch"
    tier = str(service_tier).lower() if service_tier is not None else None
    if tier in _STANDARD_TIERS:
        return ""
    return _TIER_ALIASES.get(tier, tier)  # type: ignore[arg-type]


def _cached_overlap(u: Usage) -> tuple[int, int]:
    """Cached audio / image tokens, inferred when the API did not split the cached count.

    The cached count includes cached audio and images. When the parts reported cannot add up
    to the input total, the excess is cached audio (then image) counted twice: move it.
    """
    c_audio, c_image = u.cached_audio_tokens, u.cached_image_tokens
    excess = u.cached_tokens + u.cache_write_tokens + (u.audio_input_tokens - c_audio) + (u.image_input_tokens - c_image) - u.input_tokens
    if excess > 0:
        room = max(0, min(u.audio_input_tokens - c_audio, u.cached_tokens - c_audio - c_image))
        moved = min(excess, room)
        c_audio += moved
        excess -= moved
    if excess > 0:
        room = max(0, min(u.image_input_tokens - c_image, u.cached_tokens - c_audio - c_image))
        c_image += min(excess, room)
    return c_audio, c_image


def _price(r: _Rates, u: Usage, version: str) -> Quote:
    """Integer arithmetic only: tokens x pico-per-token, plus per-unit charges.

    Every token is billed once, at its most specific rate (see ``_media_input``).
    """
    bd: dict[str, int] = {}
    inp, out = u.input_tokens, u.output_tokens
    if inp or out:
        if r.unit_only:  # never book tokens at $0 by accident
            return Quote(0, r.entry_id, False, {}, version, f"{r.entry_id!r} has no token rates (it is priced per unit)")
        if inp:
            cached = u.cached_tokens
            if u.audio_input_tokens or u.image_input_tokens:
                _media_input(r, u, bd)
            else:
                text_in = inp - cached - u.cache_write_tokens
                if text_in > 0:
                    bd["input"] = text_in * r.input
                if cached:
                    bd["cached_input"] = cached * r.cached_input
            if u.cache_write_tokens:
                long_ttl = u.cache_write_12h_tokens
                if long_ttl:
                    bd["cache_write_12h"] = long_ttl * r.cache_write_12h
                if u.cache_write_tokens - long_ttl:
                    bd["cache_write"] = (u.cache_write_tokens - long_ttl) * r.cache_write
        if out:
            text_out = out - u.reasoning_tokens - u.audio_output_tokens - u.image_output_tokens
            if text_out > 0:
                bd["output"] = text_out * r.output
            if u.reasoning_tokens:
                bd["reasoning"] = u.reasoning_tokens * r.reasoning
            if u.audio_output_tokens:
                bd["audio_output"] = u.audio_output_tokens * r.audio_output
            if u.image_output_tokens:
                bd["image_output"] = u.image_output_tokens * r.image_output
    elif u.images or u.audio_seconds or u.characters:
        reason = _per_unit(r, u, bd)
        if reason:
            return Quote(0, r.entry_id, False, {}, version, reason)
    if r.estimated is None:
        return Quote(sum(bd.values()), r.entry_id, True, bd, version)
    return Quote(sum(bd.values()), r.entry_id, True, bd, version, r.estimated, True)


def _media_input(r: _Rates, u: Usage, bd: dict[str, int]) -> None:
    """Input with audio / image tokens: cached audio at the cached audio rate, the rest of the
    cached count at the cached rate, uncached audio at the audio rate, the remainder as text."""
    cached = u.cached_tokens
    c_audio, c_image = _cached_overlap(u) if cached else (0, 0)
    audio_in = u.audio_input_tokens - c_audio
    image_in = u.image_input_tokens - c_image
    text_in = u.input_tokens - cached - u.cache_write_tokens - audio_in - image_in
    if text_in > 0:
        bd["input"] = text_in * r.input
    if cached - c_audio - c_image > 0:
        bd["cached_input"] = (cached - c_audio - c_image) * r.cached_input
    if audio_in > 0:
        bd["audio_input"] = audio_in * r.audio_input
    if c_audio:
        bd["cached_audio_input"] = c_audio * r.cached_audio_input
    if image_in > 0:
        bd["image_input"] = image_in * r.image_input
    if c_image:
        bd["cached_image_input"] = c_image * r.cached_image_input


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
        bd["audio_seconds"] = _per_second(math.ceil(u.audio_seconds), period.per_minute)
    if u.characters:
        if period.per_character is None:
            return f"no per-character price for {r.entry_id!r}"
        bd["characters"] = u.characters * period.per_character
    return None


def _per_second(seconds: int, per_minute: int) -> int:
    """Whole seconds at a per-minute price, to the nearest pico-dollar (half-even).

    $0.006/min is a whole 100,000,000 pico per second, but $0.017/min is not: this is the
    only rounding done per call (rates are exact, or rounded once when the table loads).
    """
    quotient, remainder = divmod(seconds * per_minute, 60)
    if remainder > 30 or (remainder == 30 and quotient % 2):
        quotient += 1
    return quotient


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
#: The gateway's table (its files, in order) once a sender fetched it, and its ``pricing_version``.
_gateway_files: tuple[PriceFile, ...] = ()
_gateway_version: str | None = None


def bundled_dir() -> Path:
    """``axme_meter/_pricing/data`` in a wheel, ``<repo>/pricing`` in a source checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "data"
    return packaged if packaged.is_dir() else here.parents[1] / "pricing"


def _settings_key() -> tuple[Any, ...]:
    s = _config.settings
    return (s.prices, id(s.extra_prices), len(s.extra_prices))


def bundled_files() -> list[PriceFile]:
    """The price files shipped with the package, parsed (the base every table starts from)."""
    return [parse_file(p) for p in sorted(bundled_dir().glob("*.toml")) if not p.name.startswith("known-")]


def load_table(prices: Path | None = None, extra_prices: Iterable[Mapping[str, Any]] = (),
               gateway: Iterable[PriceFile] = ()) -> PriceTable:
    """Bundled files, the gateway's, the user's file, then in-code entries (later ids override earlier).

    The gateway's files (its own bundled table and the files loaded on it) replace this package's
    entries model by model; a bundled file identical to one of the gateway's is not read twice, so a
    client and a gateway of the same release with nothing loaded share one ``version``. Models only
    this package knows keep its prices; the user's own file and ``extra_prices`` win over everything.
    """
    remote = list(gateway)
    same = {f.raw for f in remote}
    files = [f for f in bundled_files() if f.raw not in same] + remote
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
            _table = load_table(s.prices, s.extra_prices, _gateway_files)
            _built_from = _settings_key()
        return _table


def reload_table() -> None:
    """Drop the cached table; the next ``table()`` reloads every file (the gateway's table stays installed)."""
    global _table, _built_from
    with _lock:
        _table = None
        _built_from = None


def install_gateway_table(files: Iterable[PriceFile], version: str) -> PriceTable:
    """Price with the gateway's table from now on (under the user's own file and ``extra_prices``).

    The whole table is built here, on the caller's (background) thread, and then swapped in: the
    hot path never parses anything. Raises ``PriceFileError`` (nothing installed) when the user's
    own price file is broken."""
    global _table, _built_from, _gateway_files, _gateway_version
    files = tuple(files)
    key = _settings_key()
    s = _config.settings
    built = load_table(s.prices, s.extra_prices, files)
    with _lock:
        _gateway_files, _gateway_version = files, version
        fresh = _settings_key() == key  # configure() ran meanwhile: rebuild lazily with the new settings
        _table, _built_from = (built, key) if fresh else (None, None)
    return built


def forget_gateway_table() -> None:
    """Back to this package's own table (another gateway, or none, is configured now)."""
    global _table, _built_from, _gateway_files, _gateway_version
    with _lock:
        if _gateway_version is None:
            return
        _gateway_files, _gateway_version = (), None
        _table = None
        _built_from = None


def gateway_version() -> str | None:
    """The ``pricing_version`` of the gateway table in use, or ``None`` when none was installed."""
    return _gateway_version


def _on_settings_change(_settings: Any) -> None:
    if _table is not None and _settings_key() != _built_from:
        reload_table()


_config.on_change(_on_settings_change)
