"""The demo's live terminal view (rich): spend against the budget, a table per agent × intent, events."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ._record import Recorder


@dataclass(slots=True)
class GatewayView:
    """The research agent as the gateway last reported it (``None`` until it has heard from it)."""

    spent: Decimal | None = None
    state: str = "unknown"


def usd(amount: Decimal | None, places: int = 4) -> str:
    return "—" if amount is None else f"${amount:,.{places}f}"


def _budget_bar(label: str, spent: Decimal | None, budget: Decimal, style: str) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=21)
    grid.add_column(width=31)
    grid.add_column()
    ratio = float(spent / budget) if spent is not None and budget > 0 else 0.0
    bar = ProgressBar(total=100, completed=min(100.0, ratio * 100), width=30,
                      complete_style="red" if ratio >= 1 else style, finished_style="red")
    grid.add_row(label, bar, f"{usd(spent)} of {usd(budget, 2)} ({ratio:.0%})")
    return grid


def render(recorder: Recorder, budget: Decimal, agent: str, gateway: GatewayView, title: str) -> RenderableType:
    rows, events, _ = recorder.snapshot()
    table = Table(title="spend by agent × intent (this process, exact; tokens in, cached, out)", expand=False)
    for name, justify in (("agent", "left"), ("intent", "left"), ("calls", "right"), ("in", "right"),
                          ("cached", "right"), ("out", "right"), ("cost", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for (row_agent, intent), row in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        table.add_row(row_agent.rsplit("/", 1)[-1], intent or "—", f"{row.calls:,}", f"{row.tokens_in:,}",
                      f"{row.cached:,}", f"{row.tokens_out:,}", usd(row.cost))
    local = recorder.agent_cost(agent)
    state_style = "bold red" if gateway.state not in ("active", "unknown") else "green"
    header = Text.assemble(
        (f"{title}  ", "bold"), ("gateway state: ", "dim"), (gateway.state, state_style),
        ("   elapsed: ", "dim"), f"{recorder.elapsed():5.1f}s",
    )
    log = Text()
    for event in events[-8:]:
        log.append(f"{event.at:6.1f}s  ", style="dim")
        log.append(event.text + "\n", style=event.style)
    return Group(
        header,
        _budget_bar("spent (this process)", local, budget, "yellow"),
        _budget_bar("recorded by gateway", gateway.spent, budget, "cyan"),
        table,
        Panel(log or Text("waiting for the first call…", style="dim"), title="events", title_align="left"),
    )
