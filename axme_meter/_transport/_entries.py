"""Heartbeat entries: the pending spend of one agent × intent, with a fixed idempotency id from birth.

An entry is *open* while it has never been sent: the meter's pending counters of
the same agent × intent merge into it, which keeps memory
O(agents × intents × models) during an outage whatever the call rate. Once a
request carrying it has left the process it is *frozen*: the gateway may have
recorded it, so its content never changes again; it is only re-sent under the
same id. Field names and money format come from ``axme_meter/_protocol.py``.

An entry never grows past what the gateway stores in one entry (``MAX_ENTRY_USD``,
``MAX_COUNT``): :meth:`Entry.fits` tells the sender to start a new one first, and
:func:`split` cuts a meter bucket that is larger than that on its own. So spend of
any size, piled up over an outage of any length, is delivered in full.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from .._attribution import validate_address
from .._meter import TOKEN_DETAILS, Pending, Totals
from .._money import from_usd
from .._protocol import MAX_COUNT, MAX_ENTRY_USD, MAX_REPEATS, REPEATS, iso, money, parse_iso, parse_money

MAX_ENTRY_PICO = from_usd(MAX_ENTRY_USD)
_COUNTS = tuple(f.name for f in fields(Totals) if f.name != "cost_pico")

#: Wire metric name -> ``Totals`` attribute.
_TOTALS_ATTR = {
    "llm_calls": "calls",
    "tokens_in": "tokens_in",
    "tokens_out": "tokens_out",
    "cached_tokens": "cached_tokens",
    "reasoning_tokens": "reasoning_tokens",
    "estimated_calls": "estimated_calls",
    "unpriced_calls": "unpriced_calls",
}
_BY_MODEL = ("llm_calls", "tokens_in", "tokens_out")
#: Sent per model only when not zero (older gateways never see them unless a call had them): with the
#: token details the gateway can price the calls this process could not (``unpriced_calls``).
_BY_MODEL_DETAILS = ("cached_tokens", "reasoning_tokens", *TOKEN_DETAILS, "estimated_calls", "unpriced_calls")
_DETAIL_ATTR = {**_TOTALS_ATTR, **{name: name for name in TOKEN_DETAILS}}


@dataclass(slots=True)
class Entry:
    """One heartbeat entry (see the module docstring for open vs frozen)."""

    id: str
    agent: str
    intent: str | None
    window_start: float
    window_end: float
    totals: Totals = field(default_factory=Totals)
    by_model: dict[str, Totals] = field(default_factory=dict)
    pricing_version: str = ""
    frozen: bool = False
    #: Zero-cost entries that only ask the gateway for a blocked agent's state; never spooled.
    probe: bool = False
    #: Whether ``by_model`` carries the token details (and per-model ``unpriced_calls``): decided by the
    #: sender before the entry is first sent (only gateways that announce a ``pricing_version`` know the
    #: fields; others would refuse the entry) and never changed after, since the content of a sent entry
    #: is fixed. ``None``: not decided yet (the spool then keeps the details).
    details: bool | None = None
    #: Identical requests of this agent × intent by fingerprint (loop detection; counts only, never content).
    repeats: dict[str, int] = field(default_factory=dict)

    def add_repeats(self, counts: dict[str, int]) -> None:
        """Fold identical-request counts into this (open) entry."""
        for fp, n in counts.items():
            self.repeats[fp] = self.repeats.get(fp, 0) + n

    def fits_repeats(self, counts: dict[str, int]) -> bool:
        """At most ``MAX_REPEATS`` fingerprints per entry, and every count within ``MAX_COUNT``."""
        new = sum(1 for fp in counts if fp not in self.repeats)
        return (len(self.repeats) + new <= MAX_REPEATS
                and all(self.repeats.get(fp, 0) + n <= MAX_COUNT for fp, n in counts.items()))

    def add(self, model: str, pending: Pending) -> None:
        """Fold the meter's pending counters of one model into this (open) entry."""
        self.totals.merge(pending.totals)
        mine = self.by_model.get(model)
        if mine is None:
            self.by_model[model] = pending.totals
        else:
            mine.merge(pending.totals)
        self.window_start = min(self.window_start, pending.window_start)
        self.window_end = max(self.window_end, pending.window_end)
        if pending.pricing_version:
            self.pricing_version = pending.pricing_version

    def fits(self, model: str, pending: Pending) -> bool:
        """Can ``pending`` be folded in without crossing what the gateway stores in one entry?"""
        return _within(self.totals, pending.totals) and _within(self.by_model.get(model), pending.totals)

    def to_wire(self, *, details: bool | None = None) -> dict[str, Any]:
        """The entry as sent; ``details`` overrides :attr:`details` (the spool keeps undecided ones)."""
        with_details = bool(self.details if details is None else details)
        start = math.floor(self.window_start)
        end = max(math.ceil(self.window_end), start)
        body: dict[str, Any] = {"id": self.id, "agent": self.agent}
        if self.intent is not None:
            body["intent_id"] = self.intent
        body["status"] = "processing"
        body["window_start"] = iso(start)
        body["window_end"] = iso(end)
        body["metrics"] = _metrics(self.totals, tuple(_TOTALS_ATTR))
        body["by_model"] = {model: _model_metrics(t, with_details) for model, t in self.by_model.items()}
        if self.pricing_version:
            body["pricing_version"] = self.pricing_version
        if self.repeats:
            body[REPEATS] = dict(sorted(self.repeats.items()))
        return body

    def to_spool(self) -> dict[str, Any]:
        """The wire form plus exact float windows, so a reloaded open entry can keep merging."""
        body = self.to_wire(details=self.details is not False)
        body["_window"] = [self.window_start, self.window_end]
        body["_frozen"] = self.frozen
        body["_details"] = self.details
        return body

    @classmethod
    def from_spool(cls, body: object) -> Entry:
        """Inverse of :meth:`to_spool` (also accepts a plain wire entry).

        Every field is checked (a spool file may be truncated, hand-edited or from another
        version); raises ``ValueError`` naming the first bad field."""
        if not isinstance(body, dict):
            raise ValueError(f"an entry must be a JSON object, got {type(body).__name__}")
        entry_id, agent, intent = _text(body, "id"), body.get("agent"), body.get("intent_id")
        try:
            validate_address(agent)
        except ValueError:
            raise ValueError(f"agent: not an agent address: {agent!r}"[:200]) from None
        if intent is not None:
            intent = _text(body, "intent_id")
        start, end = _window(body)
        entry = cls(entry_id, str(agent), intent, start, end)
        entry.totals = _totals(body.get("metrics"), "metrics")
        by_model = body.get("by_model") or {}
        if not isinstance(by_model, dict):
            raise ValueError("by_model: must be an object")
        entry.by_model = {_model(m): _totals(t, f"by_model.{m}") for m, t in by_model.items()}
        version = body.get("pricing_version")
        if version is not None and not isinstance(version, str):
            raise ValueError("pricing_version: must be a string")
        entry.pricing_version = version or ""
        entry.repeats = _repeats(body.get(REPEATS))
        entry.frozen = body.get("_frozen", True) is not False
        details = body.get("_details")
        entry.details = details if isinstance(details, bool) else None
        return entry


def probe_entry(entry_id: str, agent: str, now: float) -> Entry:
    """A zero-cost entry for an agent that is blocked and idle, so the answer tells us when it is unblocked."""
    return Entry(entry_id, agent, None, now, now, probe=True, frozen=True)


def _metrics(totals: Totals, names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"cost_usd": money(totals.cost_pico)}
    for name in names:
        out[name] = getattr(totals, _TOTALS_ATTR[name])
    return out


def _model_metrics(totals: Totals, details: bool) -> dict[str, Any]:
    out = _metrics(totals, _BY_MODEL)
    if not details:
        return out
    for name in _BY_MODEL_DETAILS:
        value = getattr(totals, _DETAIL_ATTR[name])
        if value:
            out[name] = value
    return out


def split(pending: Pending) -> list[Pending]:
    """``pending`` as parts that each fit in one entry (almost always just ``[pending]``).

    The calls are shared out as evenly as possible and every other counter in proportion
    to them (remainders on the first part), so the parts add up exactly and each keeps
    the bucket's cost per call (the gateway's sanity limit is per call). Parts aim at
    half an entry, which leaves room for rounding and for the next bucket."""
    totals = pending.totals
    parts = max(1, -(-2 * totals.cost_pico // MAX_ENTRY_PICO), *(-(-2 * getattr(totals, n) // MAX_COUNT) for n in _COUNTS))
    if parts == 1:
        return [pending]
    calls = totals.calls
    shares = [calls // parts + (1 if i < calls % parts else 0) for i in range(parts)] if calls >= parts else [1] * parts
    weight = sum(shares)
    out = [Pending(pending.window_start) for _ in shares]
    for part in out:
        part.window_end = pending.window_end
        part.pricing_version = pending.pricing_version
    for name in ("cost_pico", *_COUNTS):
        whole = getattr(totals, name)
        if name == "calls":
            pieces = list(shares) if calls >= parts else [0] * parts
        else:
            pieces = [whole * share // weight for share in shares]
        pieces[0] += whole - sum(pieces)
        for part, piece in zip(out, pieces):
            setattr(part.totals, name, piece)
    return out


def _within(mine: Totals | None, more: Totals) -> bool:
    if mine is None:
        return True
    if mine.cost_pico + more.cost_pico > MAX_ENTRY_PICO:
        return False
    return all(getattr(mine, n) + getattr(more, n) <= MAX_COUNT for n in _COUNTS)


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= 200 or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{name}: must be a non-empty printable string of at most 200 characters, got {value!r}"[:200])
    return value


def _repeats(raw: object) -> dict[str, int]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{REPEATS}: must be an object")
    out: dict[str, int] = {}
    for fp, n in raw.items():
        if (not isinstance(fp, str) or len(fp) != 16 or any(c not in "0123456789abcdef" for c in fp)
                or not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= MAX_COUNT):
            raise ValueError(f"{REPEATS}: bad item {fp!r}: {n!r}"[:200])
        out[fp] = n
    return out


def _model(name: object) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise ValueError(f"by_model: bad model name {name!r}"[:200])
    return name


def _window(body: dict[str, Any]) -> tuple[float, float]:
    raw = body.get("_window")
    if raw is None:
        raw = [parse_iso(body.get("window_start")), parse_iso(body.get("window_end"))]
    if (not isinstance(raw, list) or len(raw) != 2
            or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) for t in raw)):
        raise ValueError("window: needs window_start and window_end (ISO-8601) or _window [start, end]")
    return float(raw[0]), float(raw[1])


def _totals(metrics: object, where: str) -> Totals:
    if not isinstance(metrics, dict):
        raise ValueError(f"{where}: must be an object")
    totals = Totals()
    cost = parse_money(metrics.get("cost_usd", 0))
    if cost is None or cost < 0:
        raise ValueError(f"{where}.cost_usd: not an amount: {metrics.get('cost_usd')!r}"[:200])
    totals.cost_pico = cost
    for name, attr in _DETAIL_ATTR.items():
        value = metrics.get(name, 0)
        if value is None:
            value = 0
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{where}.{name}: must be a whole number >= 0, got {value!r}"[:200])
        setattr(totals, attr, value)
    return totals
