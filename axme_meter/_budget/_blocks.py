"""Why an agent may not spend: one :class:`Block` per source, turned into ``BudgetExceeded`` when hit."""

from __future__ import annotations

from datetime import datetime, timezone

from .._errors import BudgetExceeded
from .._money import format_usd, to_decimal

#: Block sources, kept apart so that one source lifting never lifts another.
GATEWAY = "gateway"  # a 429/403, a non-active state, or a policy with nothing remaining
LEASE = "lease"  # this process's grant (or lease) would not cover the next call
LOCAL = "local"  # ``configure(local_limits=...)``
UNREACHABLE = "unreachable"  # fail-closed after the gateway was unreachable for ``fail_after``


class Block:
    """One reason an agent (or one of its intents) may not spend. Amounts in pico-dollars."""

    __slots__ = ("source", "policy", "limit", "spent", "resets_at", "state", "message")

    def __init__(self, source: str, policy: str | None, limit: int | None, spent: int | None, resets_at: float | None,
                 state: str = "blocked", message: str | None = None) -> None:
        self.source = source
        self.policy = policy
        self.limit = limit
        self.spent = spent
        self.resets_at = resets_at
        self.state = state
        self.message = message

    def expired(self, now: float) -> bool:
        return self.resets_at is not None and now >= self.resets_at

    def error(self, agent: str, intent: str | None) -> BudgetExceeded:
        return BudgetExceeded(
            self.message or describe(agent, self),
            agent=agent,
            intent=intent,
            policy=self.policy,
            limit=to_decimal(self.limit) if self.limit is not None else None,
            spent=to_decimal(self.spent) if self.spent is not None else None,
            resets_at=datetime.fromtimestamp(self.resets_at, timezone.utc) if self.resets_at is not None else None,
            state=self.state,
        )


def describe(agent: str, block: Block) -> str:
    """``agent://… is over max_cost_per_day_usd: spent $50.12 of $50.00; resets …``."""
    from .._protocol import iso

    if block.policy and block.limit is not None:
        text = f"{agent} is over {block.policy}"
        if block.source == LEASE:
            text = f"{agent} would exceed the remaining budget of {block.policy}"
        # Count policies (max_intents_per_day) travel through the same parser: show them as counts.
        is_money = block.policy.endswith("_usd")
        fmt = format_usd if is_money else (lambda pico: f"{to_decimal(pico):f}")
        if block.spent is not None:
            text += f": {'spent' if is_money else 'used'} {fmt(block.spent)} of {fmt(block.limit)}"
        else:
            text += f" (limit {fmt(block.limit)})"
    elif block.state not in ("blocked", "active"):
        text = f"{agent} is {block.state} on the AXME gateway"
    else:
        text = f"{agent} is blocked" + (f" by {block.policy}" if block.policy else "")
    if block.resets_at is not None:
        text += f"; resets {iso(block.resets_at)}"
    if block.source == LOCAL:
        text += " (local limit)"
    return text
