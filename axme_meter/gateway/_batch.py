"""A heartbeat batch, entry by entry: each entry is validated and authorised on its own.

Why not as a whole: one entry the gateway can never accept (an agent the key may
not write, a malformed amount) would otherwise refuse the whole batch, and a client
that keeps re-sending that batch would never deliver the good entries behind it,
so its budget would never be enforced. Here a refused entry gets its own result
(``status: "error"`` with ``code`` / ``message`` / ``field``) and the rest are recorded.

The batch's envelope (a JSON object whose ``heartbeats`` is a list of 1..MAX_BATCH)
is still checked as a whole by :class:`~axme_meter.gateway._schemas.HeartbeatBatch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .._protocol import ERROR, FORBIDDEN, INVALID, entry_result
from ._auth import Principal
from ._errors import validation_error
from ._schemas import ClientBlock, HeartbeatEntry


@dataclass(slots=True)
class CheckedBatch:
    """The entries that may be recorded (with their agents) and the results of those that may not."""

    entries: list[HeartbeatEntry] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    #: Position of each accepted entry in the request, so answers keep the request's order.
    positions: list[int] = field(default_factory=list)
    refused: dict[int, dict[str, Any]] = field(default_factory=dict)
    size: int = 0

    def answer(self, recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every entry's result in request order: ``recorded`` holds the accepted entries' results."""
        out: list[dict[str, Any] | None] = [None] * self.size
        for position, result in zip(self.positions, recorded):
            out[position] = result
        for position, result in self.refused.items():
            out[position] = result
        return [r for r in out if r is not None]


def check_entries(principal: Principal, raw_entries: list[Any]) -> CheckedBatch:
    checked = CheckedBatch(size=len(raw_entries))
    for i, raw in enumerate(raw_entries):
        entry_id = _raw_id(raw)
        prefix = f"heartbeats.{i}"
        if not isinstance(raw, dict):
            checked.refused[i] = entry_result(entry_id, ERROR, INVALID, f"{prefix}: must be a JSON object", prefix)
            continue
        try:
            entry = HeartbeatEntry.model_validate(raw)
        except ValidationError as exc:
            err = validation_error(exc, ("heartbeats", i))
            checked.refused[i] = entry_result(entry_id, ERROR, INVALID, err.message, err.details.get("field"))
            continue
        except RecursionError:
            checked.refused[i] = entry_result(entry_id, ERROR, INVALID, f"{prefix}: nested too deeply", prefix)
            continue
        address = entry.agent or principal.agent
        if address is None:
            checked.refused[i] = entry_result(entry_id, ERROR, INVALID, f"{prefix}.agent: required (this key is not "
                                              "bound to an agent)", f"{prefix}.agent")
            continue
        if not principal.can_write_agent(address):
            checked.refused[i] = entry_result(entry_id, ERROR, FORBIDDEN, f"this key may not write heartbeats for {address}; "
                                              "use a key of that agent's org (or an admin key of it)", f"{prefix}.agent")
            continue
        checked.entries.append(entry)
        checked.addresses.append(address)
        checked.positions.append(i)
    return checked


def writable_blocks(principal: Principal, blocks: list[ClientBlock]) -> list[ClientBlock]:
    """Block reports for agents this key may write; others are ignored (they change nothing the key may touch)."""
    return [b for b in blocks if principal.can_write_agent(b.agent)]


def _raw_id(raw: Any) -> str | None:
    value = raw.get("id") if isinstance(raw, dict) else None
    return value[:200] if isinstance(value, str) else None
