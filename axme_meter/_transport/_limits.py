"""Local fail-safe limits: a spending cap that holds with no gateway at all.

``configure(local_limits={"max_cost_per_day_usd": 5, "max_cost_per_intent_usd": 0.5})``
is enforced in-process from the calls this process priced. It is a safety net
for scripts and for gateway outages, not a replacement for the gateway's
org-wide view (another process of the same agent spends from its own cap).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Mapping

from .._money import from_usd

SUPPORTED = ("max_cost_per_day_usd", "max_cost_per_intent_usd")
#: Per-intent spend is tracked per agent × intent; intents come and go, so the table is trimmed.
MAX_TRACKED_INTENTS = 10_000
DAY = 86_400


def validate(limits: Mapping[str, object]) -> dict[str, Decimal]:
    """Check names and amounts early (inside ``configure``) so a typo is an error, not a silent no-op."""
    out: dict[str, Decimal] = {}
    for name, value in limits.items():
        if name not in SUPPORTED:
            raise ValueError(f"unknown local limit {name!r}; supported: {list(SUPPORTED)}")
        pico = from_usd(value, field=name)
        if pico <= 0:
            raise ValueError(f"{name} must be greater than 0, got {value!r}")
        out[name] = Decimal(pico).scaleb(-12).normalize()
    return out


@dataclass(slots=True)
class Breach:
    """A local limit the next call would cross. ``intent`` is set for per-intent breaches."""

    policy: str
    limit: int
    spent: int
    resets_at: float | None
    intent: str | None = None


class LocalLimits:
    """Running spend against the local caps. Not thread-safe: the budget ledger calls it under its lock."""

    def __init__(self, limits: Mapping[str, Decimal]) -> None:
        day = limits.get("max_cost_per_day_usd")
        per_intent = limits.get("max_cost_per_intent_usd")
        self.day_limit: int | None = from_usd(day) if day is not None else None
        self.intent_limit: int | None = from_usd(per_intent) if per_intent is not None else None
        self._day: dict[str, tuple[int, int]] = {}
        self._intent: dict[tuple[str, str], int] = {}

    @property
    def active(self) -> bool:
        return self.day_limit is not None or self.intent_limit is not None

    def account(self, agent: str, intent: str | None, cost: int, at: float) -> list[Breach]:
        """Add one call; return the limits that a next call of the same cost would cross.

        Predicting with the last call's cost means a loop of similar calls stops
        at the limit instead of one call past it.
        """
        breaches: list[Breach] = []
        if self.day_limit is not None:
            day = int(at // DAY)
            seen_day, spent = self._day.get(agent, (day, 0))
            spent = (spent if seen_day == day else 0) + cost
            self._day[agent] = (day, spent)
            if spent + cost > self.day_limit:
                breaches.append(Breach("max_cost_per_day_usd", self.day_limit, spent, float((day + 1) * DAY)))
        if self.intent_limit is not None and intent is not None:
            key = (agent, intent)
            spent = self._intent.pop(key, 0) + cost
            self._intent[key] = spent  # re-insert: dict order doubles as recency for trimming
            if len(self._intent) > MAX_TRACKED_INTENTS:
                for old in list(self._intent)[: MAX_TRACKED_INTENTS // 2]:
                    del self._intent[old]
            if spent + cost > self.intent_limit:
                breaches.append(Breach("max_cost_per_intent_usd", self.intent_limit, spent, None, intent))
        return breaches
