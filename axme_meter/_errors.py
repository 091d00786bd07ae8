"""Exceptions raised by axme_meter."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import openai


class BudgetExceeded(openai.OpenAIError):
    """An agent is blocked: raised *before* a request is sent, so no more money is spent.

    It subclasses ``openai.OpenAIError`` so that the SDK never retries it, but not
    ``APIError`` or ``RateLimitError``, so generic retry loops don't spin on it.
    """

    def __init__(
        self,
        message: str,
        *,
        agent: str,
        intent: str | None = None,
        policy: str | None = None,
        limit: Decimal | None = None,
        spent: Decimal | None = None,
        resets_at: datetime | None = None,
        state: str = "blocked",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.agent = agent
        self.intent = intent
        self.policy = policy
        self.limit = limit
        self.spent = spent
        self.resets_at = resets_at
        self.state = state


class ConfigError(ValueError):
    """A setting is invalid: names the variable (or ``configure()`` argument) and the accepted form.

    Raised once, when the settings are used (the first client, ``configure()``, ``flush()``,
    ``transport_status()``), never on a metered call.
    """

    def __init__(self, variable: str, expected: str, got: object) -> None:
        super().__init__(f"{variable} must be {expected}; got {got!r}")
        self.variable = variable
        self.expected = expected
        self.got = got


class UnknownModelError(openai.OpenAIError):
    """Strict pricing is on and a model has no price (raised before the request is sent)."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"no price for model {model!r}; add it with AXME_METER_PRICES=<file> or "
            "axme_meter.configure(prices=...), or turn strict pricing off"
        )
        self.model = model
