"""Spend-rate anomaly alerts: an agent suddenly spending far faster than it usually does.

``alert_on_spend_rate_multiple`` (a policy field, off by default) turns it on. The agent's **baseline**
comes from its own hourly counters: the larger of

- the median of the same hour of the day over the past 7 days, and
- the median of the past 24 hours,

never counting the current hour, with an hour that has no counter row counted as $0 (of the 24 hours,
the upper of the two middle values). After
``MIN_ELAPSED_SECONDS`` of the current hour (so the first call of an hour does not look like a spike),
the hour's spend is projected to a full hour (``spent × 3600 / elapsed``) and, when the projection exceeds
``multiple × baseline``, one alert goes out per agent and hour: the claim row (agent,
``alert_on_spend_rate_multiple``, hour start, ``rate``) is inserted by exactly one replica.

A baseline of $0 (an agent with no spend in most of the compared hours: new, or idle at this time of day)
never alerts: there is no usual rate to be a multiple of. Budgets still bound such agents.

Counter rows are always summed per window start (``SUM … GROUP BY start``), so the reads stay right
however many rows one window's total is stored in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from .._protocol import iso, money
from . import _store
from ._alerts import Alert
from ._db import counters
from ._schemas import CostPolicy
from ._windows import bounds

FIELD = "alert_on_spend_rate_multiple"
#: No projection before this much of the hour has passed.
MIN_ELAPSED_SECONDS = 300
SAME_HOUR_DAYS = 7
RECENT_HOURS = 24


@dataclass(frozen=True, slots=True)
class Baseline:
    """An hour's baseline and the two medians it is the larger of (pico-dollars per hour)."""

    hour_start: int
    same_hour_median: int
    recent_median: int

    @property
    def value(self) -> int:
        return max(self.same_hour_median, self.recent_median)


def _median(values: Sequence[int]) -> int:
    """The median; of an even count the upper middle value (24 hours: the 13th smallest), so that an agent
    with spend in only half of the past day is not measured against half its usual rate."""
    return sorted(values)[len(values) // 2]


def _compared_hours(hour_start: datetime, tz: str | None) -> tuple[list[int], list[int]]:
    """Starts of the same hour on the 7 previous days (DST-aware) and of the 24 previous hours."""
    same = [int(bounds("hour", hour_start - timedelta(days=k), tz)[0].timestamp()) for k in range(1, SAME_HOUR_DAYS + 1)]
    start = int(hour_start.timestamp())
    recent = [start - 3600 * k for k in range(1, RECENT_HOURS + 1)]
    return same, recent


def hourly_costs(conn: Connection, aid: str, starts: Iterable[int]) -> dict[int, int]:
    """The agent's total spend per hour window start (summed over every row a window may be stored in)."""
    wanted = sorted(set(starts))
    if not wanted:
        return {}
    rows = conn.execute(select(counters.c.start, func.sum(counters.c.cost_pico))
                        .where(counters.c.address_id == aid, counters.c.window == "hour", counters.c.dim == "total",
                               counters.c.key == "", counters.c.start.in_(wanted))
                        .group_by(counters.c.start))
    return {int(start): int(total or 0) for start, total in rows}


def baseline_of(costs: Mapping[int, int], hour_start: datetime, tz: str | None) -> Baseline:
    same, recent = _compared_hours(hour_start, tz)
    return Baseline(int(hour_start.timestamp()), _median([costs.get(s, 0) for s in same]),
                    _median([costs.get(s, 0) for s in recent]))


def baselines(conn: Connection, aid: str, hour_starts: Sequence[datetime], tz: str | None) -> list[Baseline]:
    """Baselines of several hours in one read (the dashboard's band over a day chart)."""
    needed: set[int] = set()
    for h in hour_starts:
        same, recent = _compared_hours(h, tz)
        needed.update(same, recent)
    costs = hourly_costs(conn, aid, needed)
    return [baseline_of(costs, h, tz) for h in hour_starts]


def check(conn: Connection, row: Mapping[Any, Any], policy: CostPolicy | None, now: datetime) -> list[Alert]:
    """After a heartbeat's spend is booked: the alert to send, if this hour's rate is anomalous and unclaimed."""
    raw = getattr(policy, FIELD, None) if policy is not None else None
    if raw is None:
        return []
    multiple = Decimal(str(raw))
    hour_start, _ = bounds("hour", now, policy.timezone if policy else None)
    start, ts, aid = int(hour_start.timestamp()), int(now.timestamp()), row["address_id"]
    elapsed = ts - start
    if elapsed < MIN_ELAPSED_SECONDS:
        return []
    taken = _store._claims_of(conn, None)
    if taken is not None and (aid, FIELD, start, "rate") in taken:
        return []  # this hour's alert went out already: skip the read
    same, recent = _compared_hours(hour_start, policy.timezone if policy else None)
    costs = hourly_costs(conn, aid, [start, *same, *recent])
    base = baseline_of(costs, hour_start, policy.timezone if policy else None)
    spent = costs.get(start, 0)
    projected = spent * 3600 // elapsed
    if base.value <= 0 or Decimal(projected) <= multiple * base.value:
        return []
    if not _store.claim_alert(conn, aid, FIELD, start, "rate", ts):
        return []
    ratio = (Decimal(projected) / base.value).quantize(Decimal("0.1"))
    details = {"policy": FIELD, "multiple": str(multiple), "ratio": str(ratio), "baseline": money(base.value),
               "same_hour_median": money(base.same_hour_median), "recent_median": money(base.recent_median),
               "projected": money(projected), "spent": money(spent), "elapsed_seconds": elapsed,
               "hour_start": iso(start), "resets_at": iso(start + 3600)}
    _store.add_event(conn, row["org"], aid, "alert.spend_rate", {"agent": row["address"], **details}, ts)
    notify = policy.notify.model_dump() if policy is not None else {}
    return [Alert(row["org"], aid, row["address"], FIELD, "rate", money(base.value), money(spent), iso(start + 3600),
                  dict(notify), kind="spend_rate", details=details)]


__all__ = ["Baseline", "FIELD", "MIN_ELAPSED_SECONDS", "baseline_of", "baselines", "check", "hourly_costs"]
