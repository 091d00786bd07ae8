"""The demo's closing summary, for people (rich) and for machines (JSON)."""

from __future__ import annotations

from decimal import Decimal

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from ._runner import DemoSummary
from ._view import usd


def _dec(value: str | None) -> Decimal | None:
    return Decimal(value) if value is not None else None


def _hand_over(summary: DemoSummary) -> list[tuple[str, str]]:
    """Where to look next. A URL is shown as a link only while the gateway behind it is running."""
    link = f"[link={summary.dashboard_url}]{summary.dashboard_url}[/link]"
    if summary.gateway_after == "stopped":
        return [("dashboard", "the gateway stopped with the demo, and its dashboard with it; run "
                              "[bold]axme-meter demo --keep[/] to keep both running afterwards")]
    rows = [("dashboard", link if summary.dashboard_served else f"{link} [dim](this gateway serves no dashboard)[/]"),
            ("log in with", f"admin key [bold]{summary.admin_key}[/]")]
    if summary.gateway_after == "kept":
        rows.append(("gateway", f"kept running (--keep), pid {summary.gateway_pid}, SQLite file {summary.gateway_db}: "
                                f"stop it with [bold]kill {summary.gateway_pid}[/]"))
    return rows


def print_summary(summary: DemoSummary, console: Console) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    budget = Decimal(summary.budget_usd)
    loop = f", max {summary.loop_limit} identical requests/hour" if summary.loop_limit is not None else ""
    table.add_row("agent", f"{summary.agent}  (policy: {usd(budget, 2)}/day{loop}, block)")
    table.add_row("recorded by gateway", usd(_dec(summary.gateway_spent_usd)))
    table.add_row("spent (this process)", usd(_dec(summary.local_spent_usd)))
    calls = f"{summary.research_calls:,} research-agent, {summary.triage_calls:,} triage-agent"
    if summary.upstream_requests is not None:
        calls += f"; {summary.upstream_requests:,} requests reached the (simulated) OpenAI endpoint"
    table.add_row("calls", calls)
    if summary.blocked:
        table.add_row("blocked", f"block known to the client at {summary.block_seen_after_s}s; BudgetExceeded "
                                 f"stopped the loop at {summary.stopped_after_s}s, before the request was sent")
        table.add_row("why", summary.stop_message or "")
        if summary.stopped_by:
            at = _dec(summary.spent_when_stopped_usd)
            share = f" ({at / budget:.0%} of the {usd(budget, 2)}/day budget)" if at is not None and budget > 0 else ""
            table.add_row("stopped by", f"[bold]{summary.stopped_by}[/] at {usd(at)} spent{share}")
    else:
        table.add_row("blocked", "[red]no: the loop was not stopped by the budget[/]")
    overshoot = _dec(summary.overshoot_usd)
    if overshoot is not None and summary.stopped_by == "max_identical_requests_per_hour":
        table.add_row("overshoot", f"none: the loop policy stopped it {usd(-overshoot)} below the money limit")
    elif overshoot is not None:
        over = (f"{usd(overshoot)} beyond the {usd(budget, 2)} limit ({overshoot / budget:.1%}), "
                f"{summary.overshoot_calls} call(s) made after the limit was reached"
                if overshoot > 0 else f"none: stopped {usd(-overshoot)} below the limit (the next call did not fit in what the gateway had left to grant)")
        table.add_row("overshoot", over)
    if summary.triage_after_block_ok is not None:
        table.add_row("per-agent", "triage-agent (no policy) kept working after the block"
                      if summary.triage_after_block_ok else "[red]triage-agent was blocked too[/]")
    for label, text in _hand_over(summary):
        table.add_row(label, text)
    for note in summary.notes:
        table.add_row("note", note)
    table.add_row("took", f"{summary.duration_s:.1f}s")
    console.print()
    console.print(Panel(table, title="axme-meter demo: summary", title_align="left",
                        border_style="green" if summary.blocked else "red"))
