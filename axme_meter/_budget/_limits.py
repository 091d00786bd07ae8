"""Local fail-safe limits: a spending cap that holds with no gateway at all.

``configure(local_limits={"max_cost_per_day_usd": 5, "max_cost_per_intent_usd": 0.5})``
is enforced in-process from the calls this process priced. It is a safety net
for scripts and for gateway outages, not a replacement for the gateway's
org-wide view (another process of the same agent spends from its own cap).
The day is the gateway's day (``axme_meter/_windows.py``): 00:00 in
``local_limits["timezone"]``, UTC unless given.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Mapping

from .._money import from_usd
from .._windows import epoch_bounds, zone

SUPPORTED = ("max_cost_per_day_usd", "max_cost_per_intent_usd")
#: Per-intent spend is tracked per agent × intent; intents come and go, so the table is trimmed.
MAX_TRACKED_INTENTS = 10_000


def validate(limits: Mapping[str, object]) -> dict[str, Decimal | str]:
    """Check names and amounts early (inside ``configure``) so a typo is an error, not a silent no-op."""
    out: dict[str, Decimal | str] = {}
    for name, value in limits.items():
        if name == "timezone":
            if not isinstance(value, str):
                raise ValueError(f"local_limits['timezone'] must be an IANA name such as 'Europe/Berlin', got {value!r}")
            zone(value)
            out[name] = value
            continue
        if name not in SUPPORTED:
            raise ValueError(f"unknown local limit {name!r}; supported: {[*SUPPORTED, 'timezone']}")
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
    """Running spend against the local caps. Not thread-safe: the budget calls it under its lock."""

    def __init__(self, limits: Mapping[str, Decimal | str]) -> None:
        day = limits.get("max_cost_per_day_usd")
        per_intent = limits.get("max_cost_per_intent_usd")
        tz = limits.get("timezone")
        self.timezone: str | None = tz if isinstance(tz, str) else None
        self.day_limit: int | None = from_usd(day) if day is not None else None
        self.intent_limit: int | None = from_usd(per_intent) if per_intent is not None else None
        #: agent -> (day start, day end, spent that day)
        self._day: dict[str, tuple[float, float, int]] = {}
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
            start, end, spent = self._day.get(agent, (0.0, 0.0, 0))
            if not start <= at < end:
                start, end = epoch_bounds("day", at, self.timezone)
                spent = 0
            spent += cost
            self._day[agent] = (start, end, spent)
            if spent + cost > self.day_limit:
                breaches.append(Breach("max_cost_per_day_usd", self.day_limit, spent, end))
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
