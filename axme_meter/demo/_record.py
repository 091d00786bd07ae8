"""What the demo watches: per agent × intent totals and the research agent's per-call costs.

A meter listener cannot be removed, so one module-level listener forwards to
whichever :class:`Recorder` is active; between demo runs it does nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal

from .._meter import CallRecord, meter
from .._money import to_decimal


@dataclass(slots=True)
class Row:
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cached: int = 0
    estimated: int = 0
    cost_pico: int = 0

    @property
    def cost(self) -> Decimal:
        return to_decimal(self.cost_pico)


@dataclass(slots=True)
class Event:
    at: float
    text: str
    style: str = ""


@dataclass
class Recorder:
    """Thread-safe: calls are recorded on the agent's thread, read on the display thread."""

    watched_agent: str
    started: float = field(default_factory=time.monotonic)
    rows: dict[tuple[str, str | None], Row] = field(default_factory=dict)
    #: Cost of each call of ``watched_agent``, in order (pico-dollars).
    watched_costs: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_record(self, rec: CallRecord) -> None:
        with self._lock:
            row = self.rows.get((rec.agent, rec.intent))
            if row is None:
                row = self.rows[(rec.agent, rec.intent)] = Row()
            row.calls += 1
            row.tokens_in += rec.usage.input_tokens
            row.tokens_out += rec.usage.output_tokens
            row.cached += rec.usage.cached_tokens
            row.estimated += rec.estimated
            row.cost_pico += rec.cost_pico
            if rec.agent == self.watched_agent:
                self.watched_costs.append(rec.cost_pico)

    def event(self, text: str, style: str = "") -> None:
        with self._lock:
            self.events.append(Event(time.monotonic() - self.started, text, style))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def snapshot(self) -> tuple[dict[tuple[str, str | None], Row], list[Event], list[int]]:
        with self._lock:
            rows = {k: Row(v.calls, v.tokens_in, v.tokens_out, v.cached, v.estimated, v.cost_pico) for k, v in self.rows.items()}
            return rows, list(self.events), list(self.watched_costs)

    def agent_cost(self, agent: str) -> Decimal:
        with self._lock:
            return to_decimal(sum(r.cost_pico for (a, _), r in self.rows.items() if a == agent))


def calls_beyond(costs: list[int], limit: Decimal) -> int:
    """Calls that started with the cumulative spend already at or past ``limit``."""
    limit_pico = int(limit * 10**12)
    total, beyond = 0, 0
    for cost in costs:
        if total >= limit_pico:
            beyond += 1
        total += cost
    return beyond


_active: Recorder | None = None
_installed = False


def _forward(rec: CallRecord) -> None:
    recorder = _active
    if recorder is not None:
        try:
            recorder.on_record(rec)
        except Exception:  # a listener must never break the caller's call
            pass


def activate(recorder: Recorder | None) -> None:
    global _active, _installed
    if not _installed:
        meter.add_listener(_forward)
        _installed = True
    _active = recorder
