"""The cost chart as inline SVG, built on the server from ``agent_costs()["series"]``.

No JavaScript chart library: the page works offline, prints, and the numbers in
the chart are the same strings the JSON API returns (each bar's ``<title>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .._windows import parse_instant, zone
from ._format import money, money_full

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 1100, 250, 64, 28, 12


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
class Chart:
    bars: list[Bar]
    max_label: str
    mid_label: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    base: int = HEIGHT - BOTTOM


def build(series: list[dict[str, Any]], bucket: str, tz_name: str | None) -> Chart:
    """One bar per bucket; ticks thinned to about a dozen so labels never overlap."""
    values = [Decimal(str(p["cost_usd"])) for p in series]
    top = max(values, default=Decimal(0)) or Decimal(1)
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(len(series), 1)
    every = max(1, round(len(series) / 12))
    tz = zone(tz_name)
    bars = []
    for i, (point, value) in enumerate(zip(series, values)):
        start = parse_instant(point["start"]).astimezone(tz)
        label = start.strftime("%H:%M") if bucket == "hour" else start.strftime("%b %d")
        h = float(value / top) * plot_h
        tooltip = f"{start.strftime('%Y-%m-%d %H:%M %Z')}: {money_full(point['cost_usd'])} · {point['llm_calls']} calls"
        bars.append(Bar(LEFT + i * slot + slot * 0.12, TOP + plot_h - h, slot * 0.76, h, label, tooltip,
                        label if i % every == 0 else None))
    return Chart(bars, money(top if any(values) else 0), money(top / 2 if any(values) else 0))
