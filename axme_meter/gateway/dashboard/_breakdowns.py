"""The rows that make a breakdown add up to its total.

``agent_costs()`` lists spend *per intent* and *per model*, but not every call has an
intent (or a model the client reported), and the page shows at most 50 intents. Without
the rest, "By intent" would not add up to the chart's total. These rows are computed
exactly (integer pico-dollars) and shown under each table, with a total row equal to
the chart's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .._results import AgentCosts, Breakdown


@dataclass(frozen=True, slots=True)
class Rest:
    cost_pico: int
    llm_calls: int
    count: int = 0  # hidden intents: how many


def _sum(rows: Iterable[Breakdown]) -> tuple[int, int]:
    cost = calls = 0
    for row in rows:
        cost += row.totals.cost_pico
        calls += row.totals.llm_calls
    return cost, calls


def _row(cost: int, calls: int, count: int = 0) -> Rest | None:
    return None if cost == 0 and calls == 0 else Rest(cost, calls, count)


def rest_of(costs: AgentCosts, shown_intents: int) -> dict[str, Rest | None]:
    """``{"hidden_intents", "no_intent", "no_model"}``: rows for intents past the table's limit, spend without an
    intent, spend without a reported model (each ``None`` when there is nothing to show)."""
    total_cost, total_calls = costs.totals.cost_pico, costs.totals.llm_calls
    hidden_cost, hidden_calls = _sum(costs.by_intent[shown_intents:])
    intent_cost, intent_calls = _sum(costs.by_intent)
    model_cost, model_calls = _sum(costs.by_model)
    return {
        "hidden_intents": _row(hidden_cost, hidden_calls, max(len(costs.by_intent) - shown_intents, 0)),
        "no_intent": _row(total_cost - intent_cost, max(total_calls - intent_calls, 0)),
        "no_model": _row(total_cost - model_cost, max(total_calls - model_calls, 0)),
    }
