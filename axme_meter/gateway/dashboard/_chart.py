"""The cost chart as inline SVG, built on the server from ``agent_costs().series``.

No JavaScript chart library: the page works offline, prints, and each bar's
``<title>`` carries the exact amount of its bucket (the JSON API's number).

The y axis runs from $0 to a "nice" number just above the tallest bar (steps of
1, 2, 2.5 or 5 times a power of ten), so a day that spent $0.0046 reads
$0 / $0.002 / $0.004 / $0.006 rather than $0.00 everywhere; ticks are computed
in ``Decimal`` from the exact amounts, never from floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from ..._money import to_decimal
from .._results import Bucket
from .._windows import zone
from ._format import money_full

WIDTH, HEIGHT, BOTTOM, TOP = 1100, 250, 28, 12
INTERVALS = 4  # about this many steps between $0 and the top of the axis
_NICE = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    label: str
    tooltip: str
    tick: str | None


@dataclass(frozen=True, slots=True)
class Band:
    """One bucket's usual range: from its spend-rate baseline up to where an alert fires (pico-dollars)."""

    x: float
    w: float
    y_low: float
    y_high: float
    low: int
    high: int
    tooltip: str


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    value: Decimal  # normalised: data-tick="0", "0.002"
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    bars: list[Bar]
    ticks: list[Tick]  # from $0 (the base line) up to the top of the axis
    left: int
    bands: list[Band] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    top: int = TOP
    base: int = HEIGHT - BOTTOM


def nice_scale(peak: Decimal, intervals: int = INTERVALS) -> tuple[Decimal, Decimal]:
    """(step, axis maximum): the smallest step of 1, 2, 2.5 or 5 × 10ⁿ that covers ``peak`` in ``intervals`` steps."""
    if peak <= 0:
        return Decimal(0), Decimal(0)
    raw = peak / intervals
    magnitude = Decimal(1).scaleb(raw.adjusted())
    step = next(n * magnitude for n in _NICE if n * magnitude >= raw)
    count = (peak / step).to_integral_value(rounding=ROUND_CEILING)
    return step, step * count


def tick_label(value: Decimal, step: Decimal) -> str:
    """Every label of one axis with the same places: as many as the step needs, cents at least below $1
    (``$0.0025``, ``$0.0050``; ``$0.20``; ``$50``); the base line is plain ``$0``."""
    if value == 0:
        return "$0"
    places = max(0, -step.normalize().as_tuple().exponent)  # type: ignore[operator]
    if step < 1:
        places = max(places, 2)
    return "$" + format(value.quantize(Decimal(1).scaleb(-places)), ",f")


def build(series: list[Bucket], bucket: str, tz_name: str | None,
          band: list[tuple[int, int]] | None = None) -> Chart:
    """One bar per bucket, heights against the nice axis maximum; x ticks thinned to about a dozen.

    ``band`` (the day view): per bucket, the spend-rate baseline and the spend at which the anomaly alert
    fires (``_spend_rate``; the same value twice when no multiple is set): drawn behind the bars."""
    values = [to_decimal(p.totals.cost_pico) for p in series]
    tops = [to_decimal(high) for _low, high in band or []]
    step, axis_max = nice_scale(max([*values, *tops], default=Decimal(0)))
    base, plot_h = HEIGHT - BOTTOM, HEIGHT - BOTTOM - TOP
    if step:
        steps = int(axis_max / step)
        ticks = [Tick(base - plot_h * i / steps, (step * i).normalize(), tick_label(step * i, step)) for i in range(steps + 1)]
    else:
        ticks = [Tick(base, Decimal(0), "$0")]
    left = max(48, 12 + 7 * max(len(t.label) for t in ticks))
    plot_w = WIDTH - left - 8
    slot = plot_w / max(len(series), 1)
    every = max(1, round(len(series) / 12))
    tz = zone(tz_name)

    def y(value: Decimal) -> float:
        return base - (float(value / axis_max) * plot_h if axis_max else 0.0)

    bars = []
    for i, (point, value) in enumerate(zip(series, values)):
        start = point.start.astimezone(tz)
        label = start.strftime("%H:%M") if bucket == "hour" else start.strftime("%b %d")
        h = base - y(value)
        tooltip = f"{start.strftime('%Y-%m-%d %H:%M %Z')}: {money_full(point.totals.cost_pico)} · {point.totals.llm_calls} calls"
        bars.append(Bar(left + i * slot + slot * 0.12, base - h, slot * 0.76, h, label, tooltip,
                        label if i % every == 0 else None))
    bands = []
    for i, (low, high) in enumerate(band or []):
        if high <= 0:
            continue
        text = f"usual {money_full(low)} an hour" + (f"; alert above {money_full(high)}" if high != low else "")
        bands.append(Band(left + i * slot, slot, y(to_decimal(low)), y(to_decimal(high)), low, high, text))
    return Chart(bars, ticks, left, bands)
