"""Heartbeat entries: the pending spend of one agent × intent, with a fixed idempotency id from birth.

An entry is *open* while it has never been sent: the meter's pending counters of
the same agent × intent merge into it, which keeps memory
O(agents × intents × models) during an outage whatever the call rate. Once a
request carrying it has left the process it is *frozen*: the gateway may have
recorded it, so its content never changes again; it is only re-sent under the
same id. Field names and money format come from ``axme_meter/_protocol.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .._meter import Pending, Totals
from .._protocol import iso, money, parse_iso, parse_money

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

    def to_wire(self) -> dict[str, Any]:
        start = math.floor(self.window_start)
        end = max(math.ceil(self.window_end), start)
        body: dict[str, Any] = {"id": self.id, "agent": self.agent}
        if self.intent is not None:
            body["intent_id"] = self.intent
        body["status"] = "processing"
        body["window_start"] = iso(start)
        body["window_end"] = iso(end)
        body["metrics"] = _metrics(self.totals, tuple(_TOTALS_ATTR))
        body["by_model"] = {model: _metrics(t, _BY_MODEL) for model, t in self.by_model.items()}
        if self.pricing_version:
            body["pricing_version"] = self.pricing_version
        return body

    def to_spool(self) -> dict[str, Any]:
        """The wire form plus exact float windows, so a reloaded open entry can keep merging."""
        body = self.to_wire()
        body["_window"] = [self.window_start, self.window_end]
        body["_frozen"] = self.frozen
        return body

    @classmethod
    def from_spool(cls, body: dict[str, Any]) -> Entry:
        """Inverse of :meth:`to_spool` (also accepts a plain wire entry). Raises ``ValueError`` if malformed."""
        try:
            window = body.get("_window") or [parse_iso(body["window_start"]), parse_iso(body["window_end"])]
            entry = cls(str(body["id"]), str(body["agent"]), body.get("intent_id"), float(window[0]), float(window[1]))
            entry.totals = _totals(body["metrics"])
            entry.by_model = {str(m): _totals(t) for m, t in (body.get("by_model") or {}).items()}
            entry.pricing_version = str(body.get("pricing_version") or "")
            entry.frozen = bool(body.get("_frozen", True))
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ValueError(f"malformed spooled heartbeat entry: {exc!r}") from None
        return entry


def probe_entry(entry_id: str, agent: str, now: float) -> Entry:
    """A zero-cost entry for an agent that is blocked and idle, so the answer tells us when it is unblocked."""
    return Entry(entry_id, agent, None, now, now, probe=True, frozen=True)


def _metrics(totals: Totals, names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"cost_usd": money(totals.cost_pico)}
    for name in names:
        out[name] = getattr(totals, _TOTALS_ATTR[name])
    return out


def _totals(metrics: dict[str, Any]) -> Totals:
    totals = Totals()
    cost = parse_money(metrics.get("cost_usd", 0))
    if cost is None:
        raise ValueError(f"bad cost_usd {metrics.get('cost_usd')!r}")
    totals.cost_pico = cost
    for name, attr in _TOTALS_ATTR.items():
        setattr(totals, attr, int(metrics.get(name, 0) or 0))
    return totals
