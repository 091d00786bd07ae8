"""Stand-in for ``axme_meter._pricing._table`` while the pricing engine is not in the tree yet.

Installed only when the real module cannot be imported, so these tests exercise
the real engine as soon as it lands. Prices gpt-4o-2024-08-06 at its list price.
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass


def ensure() -> None:
    try:
        importlib.import_module("axme_meter._pricing._table")
        return
    except ModuleNotFoundError as exc:
        if exc.name != "axme_meter._pricing._table":
            raise
    mod = types.ModuleType("axme_meter._pricing._table")

    @dataclass
    class Quote:
        priced: bool
        cost_pico: int
        version: str = "stub-1"
        reason: str = ""

    class PriceTable:
        version = "stub-1"
        _rates = {"gpt-4o-2024-08-06": (2_500_000, 10_000_000), "gpt-4o": (2_500_000, 10_000_000)}

        def quote(self, model, usage, *, at=None, service_tier=None, batch=False):  # noqa: ANN001
            rate = self._rates.get(model)
            if rate is None:
                return Quote(False, 0, reason="unknown model")
            return Quote(True, usage.input_tokens * rate[0] + usage.output_tokens * rate[1])

        def resolve(self, model):  # noqa: ANN001
            return model if model in self._rates else None

        def is_free(self, model):  # noqa: ANN001
            return False

    _table = PriceTable()
    mod.Quote = Quote
    mod.PriceTable = PriceTable
    mod.table = lambda: _table
    mod.reload_table = lambda: _table
    sys.modules["axme_meter._pricing._table"] = mod
