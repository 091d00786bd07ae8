"""What a new heartbeat entry books: the client's amounts, or the gateway's price for models the client could not price.

A client whose price table is older than the gateway's books calls to a model it does not know
as unpriced: at $0, or (for an agent with a money policy) at the policy's conservative rates.
When the entry says so for a model (``by_model[m].unpriced_calls == llm_calls > 0``, token
details included) and the gateway's effective table knows the model, the gateway prices those
tokens itself, so that spend counts at its list price against the agent's budget.

How it is booked (see ``docs/protocol.md``, "Re-pricing"):

- Only when the entry is recorded for the first time: a replay (``duplicate``) books nothing, so
  an entry is never counted twice, whichever table is in force when it is replayed.
- The model's counters get the gateway's price instead of the client's figure; the entry's total
  (agent and intent counters) moves by the same difference. The entry's id and digest stay those
  of the client's content, and grants settle on what the client reported it used (its local,
  usually more conservative, figure).
- The price: the model's token details at standard rates (the aggregate carries no tier), on the
  UTC day of ``window_start``, with per-request thresholds (long context) applied to the average
  call. An item with some priced calls (its table changed mid-entry) is booked as reported: its
  token counts cannot be split between priced and unpriced calls.
- Nothing is re-priced into an amount the gateway would refuse from a client (more than
  ``MAX_CALL_USD`` per call, more than ``MAX_ENTRY_USD`` for the entry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from .._money import from_usd
from .._pricing import PriceTable, Usage
from .._protocol import MAX_CALL_USD, MAX_ENTRY_USD, parse_iso
from . import _prices
from ._schemas import HeartbeatEntry, ModelMetrics

_MAX_CALL_PICO = from_usd(MAX_CALL_USD)
_MAX_ENTRY_PICO = from_usd(MAX_ENTRY_USD)
_TABLE_KEY = "axme_reprice_table"


@dataclass(slots=True)
class Amounts:
    """What one entry books: its total cost and each model's (pico-dollars)."""

    total: int
    by_model: dict[str, int]
    #: Models the gateway priced (model -> the client's figure it replaced).
    repriced: dict[str, int]


def amounts(conn: Connection, entry: HeartbeatEntry, now: datetime) -> Amounts:
    """The amounts to book for a newly recorded entry (the client's, unless it left a model unpriced)."""
    reported = {model: mm.cost_usd for model, mm in entry.by_model.items()}
    booked = Amounts(entry.metrics.cost_usd, reported, {})
    candidates = [m for m, mm in entry.by_model.items() if _unpriced(mm)]
    if not candidates:
        return booked  # the common case: no query, no table
    table = _table(conn)
    at = _priced_at(entry, now)
    total = entry.metrics.cost_usd
    for model in candidates:
        mm = entry.by_model[model]
        cost = _price(table, model, mm, at)
        if cost is None:
            continue
        new_total = total - min(mm.cost_usd, total) + cost
        if new_total > _MAX_ENTRY_PICO:
            continue
        total = new_total
        booked.by_model[model] = cost
        booked.repriced[model] = mm.cost_usd
    booked.total = total
    return booked


def _unpriced(mm: ModelMetrics) -> bool:
    """Every call of this model in the entry was unpriced, and the entry says what they consumed."""
    return 0 < mm.unpriced_calls == mm.llm_calls and (mm.tokens_in > 0 or mm.tokens_out > 0)


def _table(conn: Connection) -> PriceTable:
    """The effective table as committed for this transaction (read once per transaction: ``conn.info``
    outlives it, so the table is kept with the transaction it was read in)."""
    transaction = conn.get_transaction()
    cached = conn.info.get(_TABLE_KEY)
    if cached is not None and cached[0] is transaction:
        return cached[1]  # type: ignore[no-any-return]
    table = _prices.effective(conn).table
    conn.info[_TABLE_KEY] = (transaction, table)
    return table


def _priced_at(entry: HeartbeatEntry, now: datetime) -> float:
    """The calls' day: ``window_start`` when it is a valid instant not after ``now``, else ``now``."""
    received = now.timestamp()
    start = parse_iso(entry.window_start) if entry.window_start else None
    return start if start is not None and start <= received else received


def _price(table: PriceTable, model: str, mm: ModelMetrics, at: float) -> int | None:
    """The gateway's price of the item's tokens, or ``None`` when it cannot price them (or not sanely)."""
    if table.resolve(model) is None:
        return None
    usage = Usage(
        input_tokens=mm.tokens_in, cached_tokens=mm.cached_tokens, cache_write_tokens=mm.cache_write_tokens,
        cache_write_12h_tokens=mm.cache_write_12h_tokens, output_tokens=mm.tokens_out,
        reasoning_tokens=mm.reasoning_tokens, audio_input_tokens=mm.audio_input_tokens,
        cached_audio_tokens=mm.cached_audio_tokens, audio_output_tokens=mm.audio_output_tokens,
        image_input_tokens=mm.image_input_tokens, cached_image_tokens=mm.cached_image_tokens,
        image_output_tokens=mm.image_output_tokens,
    )
    quote = table.quote(model, usage, at=at, requests=mm.llm_calls)
    if not quote.priced or quote.cost_pico <= 0 or quote.cost_pico > _MAX_CALL_PICO * mm.llm_calls:
        return None
    return quote.cost_pico


__all__ = ["Amounts", "amounts"]
