"""Window math: which hour / day / week / month a moment falls in, in a policy's timezone.

Counters are keyed by the UTC epoch second at which their window *starts in the
agent's timezone*, so "today" for an agent in Asia/Tokyo starts at 00:00 Tokyo.
Weeks start on Monday, months on the 1st. DST is handled by doing the calendar
arithmetic on local wall-clock dates and converting back with ``zoneinfo``.

The clock is injectable across processes: when ``AXME_GATEWAY_CLOCK_FILE`` is set,
"now" is the ISO-8601 timestamp in that file, re-read on every call, so tests can
roll windows over in a running gateway without sleeping.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WINDOWS: tuple[str, ...] = ("hour", "day", "week", "month")
UTC = timezone.utc


class Clock:
    """Real time, or the timestamp in a file when one is configured (tests, demos)."""

    def __init__(self, clock_file: str | None = None) -> None:
        self.clock_file = clock_file

    def now(self) -> datetime:
        if self.clock_file:
            with open(self.clock_file, encoding="utf-8") as fh:
                return parse_instant(fh.read().strip())
        return datetime.now(UTC)


def parse_instant(text: str) -> datetime:
    """ISO-8601 (``Z`` or offset; naive means UTC) to an aware UTC datetime."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


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


def window_starts(now: datetime, tz_name: str | None = None) -> dict[str, int]:
    """Epoch-second start of each window kind containing ``now``: the counter keys for one ingest."""
    return {kind: int(bounds(kind, now, tz_name)[0].timestamp()) for kind in WINDOWS}


def iso(moment: datetime | int | float | None) -> str | None:
    """The protocol's ``2026-11-29T00:00:00Z`` form (whole seconds, UTC)."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def buckets(kind: str, start: datetime, end: datetime, tz_name: str | None = None, limit: int = 1000) -> list[int]:
    """Epoch starts of every ``kind`` window overlapping ``[start, end)``, for cost series."""
    out: list[int] = []
    cursor, _ = bounds(kind, start, tz_name)
    while cursor < end and len(out) < limit:
        out.append(int(cursor.timestamp()))
        cursor = bounds(kind, cursor, tz_name)[1]
    return out
