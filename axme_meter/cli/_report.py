"""``axme-meter report [--window day|week|month]``: cost per agent and per intent, from the gateway.

Reads ``GET /v1/mesh/agents?window=`` for the agents and their cost in the
window, then ``GET /v1/mesh/agents/{address_id}/costs?window=`` for each
agent's per-intent breakdown, and prints them as rich tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

from .._money import display_usd
from ._api import GatewayAPI, GatewayError, add_connection_flags
from ._help import examples


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "report", help="cost per agent and per intent, as the gateway recorded it",
        description="Print the cost of every agent the key can see, and of their intents, in the current hour, day, "
        "week or month (in each agent's policy timezone). Long addresses wrap to the terminal; --wide keeps each row "
        "on one line.",
        epilog=examples("axme-meter report", "axme-meter report --window week --wide",
                        "axme-meter report --agent agent://myorg/production/research-agent --top 50",
                        "axme-meter report --window month --json > costs.json"),
    )
    parser.add_argument("--window", choices=["hour", "day", "week", "month"], default="day",
                        help="the current hour, day, week or month (default day)")
    parser.add_argument("--agent", metavar="AGENT", help="only this agent (address or addr_… id)")
    parser.add_argument("--top", type=int, default=20, metavar="N", help="intents shown per agent (default 20)")
    parser.add_argument("--json", action="store_true", help="print the gathered JSON instead of tables")
    parser.add_argument("--wide", action="store_true", help="never wrap: one line per row, however wide (for pipes and grep)")
    add_connection_flags(parser)
    parser.set_defaults(handler=_run)


def _money(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def _breakdown(costs: Any, key: str) -> list[dict[str, Any]]:
    """``by_intent`` may be a list of rows or a mapping id -> totals; normalise to rows with ``id``."""
    raw = costs.get(key) if isinstance(costs, dict) else None
    if isinstance(raw, dict):
        return [{"id": k, **(v if isinstance(v, dict) else {"cost_usd": v})} for k, v in raw.items()]
    if isinstance(raw, list):
        return [dict(row, id=row.get("intent_id") or row.get("id") or row.get("model")) for row in raw if isinstance(row, dict)]
    return []


def gather(api: GatewayAPI, window: str, only: str | None) -> list[dict[str, Any]]:
    agents = api.agents(window)
    if only:
        agents = [a for a in agents if only in (a.get("address"), a.get("address_id"))]
    report = []
    for entry in agents:
        ident = entry.get("address_id") or entry.get("address")
        costs = api.costs(str(ident), window) if ident else {}
        report.append({"agent": entry, "costs": costs})
    return report


def _run(args: argparse.Namespace) -> int:
    try:
        with GatewayAPI(args.gateway, args.api_key) as api:
            report = gather(api, args.window, args.agent)
    except GatewayError as exc:
        print(f"axme-meter report: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, default=str))
        return 0
    try:
        from rich.console import Console
    except ModuleNotFoundError:
        print("axme-meter report: tables need the 'gateway' extra (pip install 'axme_meter[gateway]'); "
              "or use --json", file=sys.stderr)
        return 1
    # --wide: as wide as the longest row; otherwise the terminal's width, wrapping long cells (never cutting them)
    _print(report, args.window, args.top, Console(width=100_000 if args.wide else None, soft_wrap=args.wide), args.wide)
    return 0


def _print(report: list[dict[str, Any]], window: str, top: int, console: Any, wide: bool) -> None:
    from rich.table import Table

    if not report:
        console.print(f"no agents have reported to this gateway (window: {window})")
        return
    agents = Table(title=f"cost per agent ({window})", expand=False)
    for name, justify in (("agent", "left"), ("state", "left"), ("health", "left"), ("intents", "right"),
                          ("cost", "right")):
        agents.add_column(name, justify=justify, overflow="fold", no_wrap=wide)  # type: ignore[arg-type]
    total = Decimal(0)
    for item in sorted(report, key=lambda r: _money(r["agent"].get("cost_period")), reverse=True):
        entry = item["agent"]
        cost = _money(entry.get("cost_period"))
        total += cost
        agents.add_row(str(entry.get("address")), str(entry.get("state", "")), str(entry.get("health_status", "")),
                       str(entry.get("intents_period", "")), display_usd(cost))
    agents.add_section()
    agents.add_row("total", "", "", "", display_usd(total))
    console.print(agents)
    intents = Table(title=f"cost per intent ({window}, top {top} per agent)")
    for name, justify in (("agent", "left"), ("intent", "left"), ("calls", "right"), ("cost", "right")):
        intents.add_column(name, justify=justify, overflow="fold", no_wrap=wide)  # type: ignore[arg-type]
    for item in report:
        rows = sorted(_breakdown(item["costs"], "by_intent"), key=lambda r: _money(r.get("cost_usd")), reverse=True)
        for row in rows[:top]:
            intents.add_row(str(item["agent"].get("address")), str(row.get("id") or "(no intent)"),
                            str(row.get("llm_calls", row.get("calls", ""))), display_usd(_money(row.get('cost_usd'))))
    if intents.row_count:
        console.print(intents)
