"""The in-process meter: exact running totals, plus pending buckets for the sender.

Every priced call lands here once. Two views are kept under one short lock:

* ``totals`` answer :func:`axme_meter.spend` (process lifetime, until reset);
* ``pending`` holds what the heartbeat sender has not taken yet, one counter per
  agent × intent × model, so memory grows with the number of active agents,
  intents and models, never with the number of calls.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

from ._money import to_decimal
from ._pricing._usage import Usage


@dataclass(slots=True)
class CallRecord:
    """One metered call, priced. Built by the client, consumed by :class:`Meter`."""

    agent: str
    intent: str | None
    model: str
    usage: Usage
    cost_pico: int
    priced: bool
    estimated: bool
    pricing_version: str
    endpoint: str = ""
    at: float = field(default_factory=time.time)


#: Token details kept per model besides the totals (parts of ``tokens_in`` / ``tokens_out``, named as in
#: ``Usage``): they go to the gateway with each model's spend, so it can price calls this process could not.
TOKEN_DETAILS = (
    "cache_write_tokens", "cache_write_12h_tokens", "audio_input_tokens", "cached_audio_tokens", "audio_output_tokens",
    "image_input_tokens", "cached_image_tokens", "image_output_tokens",
)


@dataclass(slots=True)
class Totals:
    """Counters for one slice of spend. ``cost_pico`` is exact; see :attr:`cost_usd`.

    ``cached_tokens`` … ``image_output_tokens`` are parts of ``tokens_in`` / ``tokens_out``, as in
    :class:`~axme_meter._pricing.Usage`."""

    cost_pico: int = 0
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated_calls: int = 0
    unpriced_calls: int = 0
    cache_write_tokens: int = 0
    cache_write_12h_tokens: int = 0
    audio_input_tokens: int = 0
    cached_audio_tokens: int = 0
    audio_output_tokens: int = 0
    image_input_tokens: int = 0
    cached_image_tokens: int = 0
    image_output_tokens: int = 0

    @property
    def cost_usd(self) -> Decimal:
        return to_decimal(self.cost_pico)

    def add(self, rec: CallRecord) -> None:
        usage = rec.usage
        self.cost_pico += rec.cost_pico
        self.calls += 1
        self.tokens_in += usage.input_tokens
        self.tokens_out += usage.output_tokens
        self.cached_tokens += usage.cached_tokens
        self.reasoning_tokens += usage.reasoning_tokens
        if rec.estimated:
            self.estimated_calls += 1
        if not rec.priced:
            self.unpriced_calls += 1
        if (usage.cache_write_tokens or usage.audio_input_tokens or usage.audio_output_tokens or usage.image_input_tokens
                or usage.image_output_tokens):
            self._add_details(usage)

    def _add_details(self, usage: Usage) -> None:
        """Cache writes, audio and image tokens (rare: kept off the common path of :meth:`add`)."""
        for name in TOKEN_DETAILS:
            setattr(self, name, getattr(self, name) + getattr(usage, name))

    def merge(self, other: Totals) -> None:
        self.cost_pico += other.cost_pico
        self.calls += other.calls
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.cached_tokens += other.cached_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.estimated_calls += other.estimated_calls
        self.unpriced_calls += other.unpriced_calls
        for name in TOKEN_DETAILS:
            more = getattr(other, name)
            if more:
                setattr(self, name, getattr(self, name) + more)

    def copy(self) -> Totals:
        clone = Totals()
        clone.merge(self)
        return clone


@dataclass(slots=True)
class Spend:
    """A snapshot returned by :func:`axme_meter.spend`."""

    total: Totals
    by_agent: dict[str, Totals]
    by_intent: dict[str | None, Totals]
    by_model: dict[str, Totals]

    @property
    def cost_usd(self) -> Decimal:
        return self.total.cost_usd

    @property
    def calls(self) -> int:
        return self.total.calls

    @property
    def tokens_in(self) -> int:
        return self.total.tokens_in

    @property
    def tokens_out(self) -> int:
        return self.total.tokens_out

    @property
    def cached_tokens(self) -> int:
        return self.total.cached_tokens

    @property
    def reasoning_tokens(self) -> int:
        return self.total.reasoning_tokens

    @property
    def estimated_calls(self) -> int:
        return self.total.estimated_calls

    @property
    def unpriced_calls(self) -> int:
        return self.total.unpriced_calls


class Pending:
    """Spend of one agent × intent × model that the heartbeat sender has not taken yet."""

    __slots__ = ("totals", "window_start", "window_end", "pricing_version")

    def __init__(self, at: float) -> None:
        self.totals = Totals()
        self.window_start = at
        self.window_end = at
        self.pricing_version = ""


class Meter:
    """Thread-safe aggregation of :class:`CallRecord` s. One per process.

    The hot path touches two counters per call, both keyed by agent × intent × model:
    one for the process lifetime, one pending for the sender. Breakdowns by agent,
    intent and model are built when read (``snapshot``), which is rare.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Callable[[CallRecord], None]] = []
        #: Failures inside metering (logged, never raised into the user's call).
        self.errors = 0
        self._clear()
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _clear(self) -> None:
        self._lifetime: dict[tuple[str, str | None, str], Totals] = {}
        self._pending: dict[tuple[str, str | None, str], Pending] = {}

    def record(self, rec: CallRecord) -> None:
        key = (rec.agent, rec.intent, rec.model)
        with self._lock:
            totals = self._lifetime.get(key)
            if totals is None:
                totals = self._lifetime[key] = Totals()
            totals.add(rec)
            slot = self._pending.get(key)
            if slot is None:
                slot = self._pending[key] = Pending(rec.at)
            slot.totals.add(rec)
            if rec.at > slot.window_end:
                slot.window_end = rec.at
            slot.pricing_version = rec.pricing_version
        for listener in self._listeners:
            listener(rec)

    def add_listener(self, listener: Callable[[CallRecord], None]) -> None:
        """Call ``listener`` after every record (observers such as the OpenTelemetry bridge).

        Listeners run on the caller's thread, outside the lock, and must be cheap and never raise.
        """
        self._listeners.append(listener)

    def snapshot(self) -> Spend:
        with self._lock:
            items = [(key, totals.copy()) for key, totals in self._lifetime.items()]
        spend = Spend(total=Totals(), by_agent={}, by_intent={}, by_model={})
        for (agent, intent, model), totals in items:
            spend.total.merge(totals)
            _slot(spend.by_agent, agent).merge(totals)
            _slot(spend.by_intent, intent).merge(totals)
            _slot(spend.by_model, model).merge(totals)
        return spend

    def drain(self) -> dict[tuple[str, str | None, str], Pending]:
        """Take all pending spend, keyed by agent × intent × model. The caller (the sender) now owns it."""
        with self._lock:
            pending = self._pending
            self._pending = {}
        return pending

    def has_pending(self) -> bool:
        return bool(self._pending)

    def reset(self) -> None:
        """Forget totals and pending buckets (tests and notebooks)."""
        with self._lock:
            self._clear()

    def _after_fork_in_child(self) -> None:
        # The parent still owns (and will send) its pending spend; the child starts clean.
        self._lock = threading.Lock()
        self._clear()


def _slot(table: dict, key: object) -> Totals:
    totals = table.get(key)
    if totals is None:
        totals = table[key] = Totals()
    return totals


meter = Meter()
