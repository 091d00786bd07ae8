"""The gateway's clock and counter keys, on top of the shared window definition in ``axme_meter/_windows.py``.

Counters are keyed by the UTC epoch second at which their window *starts in the
agent's timezone*, so "today" for an agent in Asia/Tokyo starts at 00:00 Tokyo.

The clock is injectable across processes: when ``AXME_GATEWAY_CLOCK_FILE`` is set,
"now" is the ISO-8601 timestamp in that file, re-read on every call, so tests can
roll windows over in a running gateway without sleeping.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from .._protocol import iso
from .._windows import UTC, WINDOWS, bounds, zone

__all__ = ["UTC", "WINDOWS", "Clock", "bounds", "buckets", "iso", "parse_instant", "window_starts", "zone"]


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


def window_starts(now: datetime, tz_name: str | None = None) -> dict[str, int]:
    """Epoch-second start of each window kind containing ``now``: the counter keys for one ingest.

    Remembered per (second, timezone): a heartbeat asks once per agent and per evaluation, and a busy
    gateway answers many heartbeats a second (the zone arithmetic was a tenth of a heartbeat's CPU)."""
    return dict(_starts(now.replace(microsecond=0), tz_name))


@lru_cache(maxsize=1024)
def _starts(now: datetime, tz_name: str | None) -> tuple[tuple[str, int], ...]:
    return tuple((kind, int(bounds(kind, now, tz_name)[0].timestamp())) for kind in WINDOWS)


def buckets(kind: str, start: datetime, end: datetime, tz_name: str | None = None, limit: int = 1000) -> list[int]:
    """Epoch starts of every ``kind`` window overlapping ``[start, end)``, for cost series."""
    out: list[int] = []
    cursor, _ = bounds(kind, start, tz_name)
    while cursor < end and len(out) < limit:
        out.append(int(cursor.timestamp()))
        cursor = bounds(kind, cursor, tz_name)[1]
    return out
