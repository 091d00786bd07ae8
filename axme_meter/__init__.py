"""axme_meter: know what every agent and intent spends on LLM calls, and stop runaway loops.

Swap ``openai.OpenAI()`` for ``axme_meter.OpenAI()``; scope work with
``@axme_meter.agent(...)`` and ``with axme_meter.intent(...)``; read
``axme_meter.spend()``. With ``AXME_GATEWAY_URL`` set, spend is sent to the
gateway every 30 s and a budget block raises ``BudgetExceeded`` before the next
request leaves the process.

Importing this package has no side effects: the runtime (exit flush, fork
handling, the heartbeat sender) is installed by the first client or ``configure()``.
"""

from __future__ import annotations

from ._attribution import InvalidAgentAddress, agent, bind, intent
from ._client import AsyncAzureOpenAI, AsyncOpenAI, AzureOpenAI, EstimatedPriceWarning, OpenAI, UnpricedCallWarning
from ._config import configure
from ._errors import BudgetExceeded, ConfigError, UnknownModelError
from ._meter import Spend, Totals, meter as _meter
from ._transport._flush_result import FlushResult
from . import _runtime

__version__ = "0.1.0"

__all__ = [
    "AsyncAzureOpenAI",
    "AsyncOpenAI",
    "AzureOpenAI",
    "BudgetExceeded",
    "ConfigError",
    "EstimatedPriceWarning",
    "FlushResult",
    "InvalidAgentAddress",
    "OpenAI",
    "Spend",
    "Totals",
    "UnknownModelError",
    "UnpricedCallWarning",
    "agent",
    "bind",
    "configure",
    "flush",
    "intent",
    "reset_spend",
    "spend",
    "transport_status",
]


def spend() -> Spend:
    """A snapshot of what this process has spent: totals, and breakdowns by agent, intent and model."""
    return _meter.snapshot()


def reset_spend() -> None:
    """Forget the in-process totals (for tests and notebooks).

    Spend the heartbeat sender has already taken is still delivered; only the
    meter's not-yet-taken buckets (at most about half a second of spend) are dropped.
    """
    _meter.reset()


def flush(timeout: float = 5.0) -> FlushResult:
    """Send all unsent spend to the gateway now, bounded by ``timeout`` seconds.

    The result is truthy when the gateway has everything this process metered (or
    there is no gateway: meter-only mode has nothing to deliver). When it is falsy,
    ``result.some_pending`` means spend is still on its way (kept in the spool and
    re-sent by the background sender or the next process) and ``result.some_refused``
    means the gateway refused some for good (quarantined with the reason; see
    ``axme-meter spool quarantine``). ``result.state`` tells why delivery is stuck.
    """
    return _runtime.default().flush(timeout)


def transport_status() -> dict[str, object]:
    """Where delivery and enforcement stand. Never the API key.

    ``state`` is ``ok``, ``unreachable`` (connection error, 5xx, timeout), ``unauthorized``
    (401: the key is unknown or revoked) or ``forbidden`` (the key may not write an agent);
    also the gateway, pending entries, quarantined spend, the spool and the blocks.
    """
    return _runtime.default().status()
