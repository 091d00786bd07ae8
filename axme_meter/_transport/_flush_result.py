"""What ``axme_meter.flush()`` returns: did all spend reach the gateway, and if not, why not.

Truthy only when everything this process metered was delivered, so ``assert
axme_meter.flush()`` keeps meaning "the gateway has it all". When it is falsy, the
attributes tell the two cases apart: spend the gateway *refused* for good (quarantined,
see ``_quarantine.py``; re-sending the same entries cannot help) and spend still
*pending* (kept in the spool and re-sent by the background sender or the next process).
No heavy imports: ``axme_meter`` exports the type at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class FlushResult:
    """The outcome of ``axme_meter.flush()``. ``bool(result)`` is :attr:`all_delivered`."""

    #: Entries not acknowledged yet (spool / memory), and their cost.
    pending_entries: int = 0
    pending_usd: Decimal = Decimal(0)
    #: Entries this process's sender had refused for good (quarantined), and their cost.
    refused_entries: int = 0
    refused_usd: Decimal = Decimal(0)
    #: The delivery state: ``ok``, ``unreachable``, ``unauthorized``, ``forbidden`` (or ``meter-only``).
    state: str = "ok"

    @property
    def all_delivered(self) -> bool:
        return self.pending_entries == 0 and self.refused_entries == 0

    @property
    def some_refused(self) -> bool:
        return self.refused_entries > 0

    @property
    def some_pending(self) -> bool:
        return self.pending_entries > 0

    @property
    def outcome(self) -> str:
        """``"delivered"``, ``"pending"`` (some not sent yet) or ``"refused"`` (none pending, some refused)."""
        if self.some_pending:
            return "pending"
        return "refused" if self.some_refused else "delivered"

    def __bool__(self) -> bool:
        return self.all_delivered

    def __str__(self) -> str:
        if self.all_delivered:
            return "all spend delivered"
        parts = []
        if self.some_pending:
            parts.append(f"{self.pending_entries} entries (${self.pending_usd}) still pending, gateway {self.state}")
        if self.some_refused:
            parts.append(f"{self.refused_entries} entries (${self.refused_usd}) refused by the gateway and quarantined")
        return "; ".join(parts)


__all__ = ["FlushResult"]
