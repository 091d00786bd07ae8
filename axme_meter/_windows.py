"""Policy windows: which hour / day / week / month a moment falls in, in a policy's timezone.

One definition for both sides: the gateway keys its counters and policies by these
windows, and the client's ``local_limits`` use the same ones, so
``max_cost_per_day_usd`` means the same day everywhere (00:00 in the policy's
timezone, UTC by default; weeks start on Monday, months on the 1st). DST is
handled by doing the calendar arithmetic on local wall-clock dates and converting
back with ``zoneinfo``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WINDOWS: tuple[str, ...] = ("hour", "day", "week", "month")
UTC = timezone.utc


@lru_cache(maxsize=512)
def zone(name: str | None) -> ZoneInfo | timezone:
    """The tzinfo for an IANA name; ``None``/empty means UTC. Raises ``ValueError`` if unknown."""
    if not name or name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown IANA timezone {name!r} (for example 'Europe/Berlin' or 'UTC')") from None


def _local_start(kind: str, local: datetime) -> datetime:
    """Start of the window containing ``local`` as a naive local wall-clock datetime."""
    naive = local.replace(tzinfo=None)
    if kind == "hour":
        return naive.replace(minute=0, second=0, microsecond=0)
    day = naive.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "day":
        return day
    if kind == "week":
        return day - timedelta(days=day.weekday())
    if kind == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown window {kind!r}; expected one of {', '.join(WINDOWS)}")


def _next_local(kind: str, start: datetime) -> datetime:
    if kind == "hour":
        return start + timedelta(hours=1)
    if kind == "day":
        return start + timedelta(days=1)
    if kind == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def _to_utc(naive_local: datetime, tz: ZoneInfo | timezone) -> datetime:
    return naive_local.replace(tzinfo=tz).astimezone(UTC)


def bounds(kind: str, now: datetime, tz_name: str | None = None) -> tuple[datetime, datetime]:
    """``(start, end)`` in UTC of the ``kind`` window containing ``now`` in timezone ``tz_name``.

    Hour windows are exact 3600 s spans of UTC time (an hour boundary is an hour
    boundary everywhere except in half-hour zones, where local wall-clock is used).
    """
    tz = zone(tz_name)
    local = now.astimezone(tz)
    start_local = _local_start(kind, local)
    if kind == "hour":
        start = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        offset = local.utcoffset() or timedelta(0)
        if offset.total_seconds() % 3600:
            start = _to_utc(start_local, tz)
        return start, start + timedelta(hours=1)
    return _to_utc(start_local, tz), _to_utc(_next_local(kind, start_local), tz)


def epoch_bounds(kind: str, at: float, tz_name: str | None = None) -> tuple[float, float]:
    """:func:`bounds` for epoch seconds, as the client keeps time."""
    start, end = bounds(kind, datetime.fromtimestamp(at, UTC), tz_name)
    return start.timestamp(), end.timestamp()
