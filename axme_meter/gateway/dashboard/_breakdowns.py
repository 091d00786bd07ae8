"""The rows that make a breakdown add up to its total.

``agent_costs()`` lists spend *per intent* and *per model*, but not every call has an
intent (or a model the client reported), and the page shows at most 50 intents. Without
the rest, "By intent" would not add up to the chart's total. These rows are computed
exactly (``Decimal`` from the API's decimal strings) and shown under each table, with a
total row equal to the chart's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any


def _sum(rows: Iterable[Mapping[str, Any]]) -> tuple[Decimal, int]:
    cost, calls = Decimal(0), 0
    for row in rows:
        cost += Decimal(str(row.get("cost_usd") or 0))
        calls += int(row.get("llm_calls") or 0)
    return cost, calls


def _row(cost: Decimal, calls: int, **extra: Any) -> dict[str, Any] | None:
    if cost == 0 and calls == 0:
        return None
    return {"cost_usd": format(cost.normalize(), "f") if cost else "0", "llm_calls": calls, **extra}


def rest_of(costs: Mapping[str, Any], shown_intents: int) -> dict[str, Any]:
    """``{"hidden_intents", "no_intent", "no_model"}``: rows for intents past the table's limit, spend without an
    intent, spend without a reported model (each ``None`` when there is nothing to show)."""
    totals = costs.get("totals") or {}
    total_cost, total_calls = Decimal(str(totals.get("cost_usd") or 0)), int(totals.get("llm_calls") or 0)
    by_intent = list(costs.get("by_intent") or [])
    hidden_cost, hidden_calls = _sum(by_intent[shown_intents:])
    intent_cost, intent_calls = _sum(by_intent)
    model_cost, model_calls = _sum(costs.get("by_model") or [])
    return {
        "hidden_intents": _row(hidden_cost, hidden_calls, count=max(len(by_intent) - shown_intents, 0)),
        "no_intent": _row(total_cost - intent_cost, max(total_calls - intent_calls, 0)),
        "no_model": _row(total_cost - model_cost, max(total_calls - model_calls, 0)),
    }
