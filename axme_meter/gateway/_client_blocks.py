"""Blocks a client process set on its own, made visible on the gateway.

A client stops an agent locally when its lease of the remaining budget would not
cover the next call, when a ``local_limits`` cap is reached, or when it fails
closed after the gateway was unreachable. The gateway would otherwise never know:
it saw only the spend. The client's next heartbeat carries ``blocks`` (see
``docs/protocol.md``); here each report

* becomes one ``agent.blocked`` event with ``"source": "client"`` per agent × policy
  × window (claimed like alerts, so repeats and replicas add nothing), and
* is kept on the agent row (``client_block``) so reads show that the agent was stopped
  while the block is current.

Current means: its ``resets_at`` has not passed (a block without one, such as
fail-closed, holds for :data:`UNTIMED_SECONDS` after it was last reported), and the
reporting process has not spent for the agent since without reporting it. Saving or
deleting the agent's policy clears it (``_store.set_policy``): it was about the old one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from .._protocol import iso, money, parse_iso
from . import _store
from ._schemas import ClientBlock

#: How long a block without ``resets_at`` (fail-closed) stays current after it was last reported.
UNTIMED_SECONDS = 3600
_DAY = 86_400


def record(conn: Connection, rows: Mapping[str, Mapping[Any, Any]], blocks: Sequence[ClientBlock],
           spenders: Iterable[tuple[str, str]], ts: int) -> None:
    """Store the reports, claim one event per agent × policy × window, and clear blocks their reporter got past.

    ``spenders`` are ``(address, instance)`` pairs of this batch's entries: a process that spends for an
    agent again without reporting a block for it is no longer blocked."""
    reported: dict[str, ClientBlock] = {}
    for block in blocks:
        reported[block.agent] = block  # the last report of an agent wins
    for address, block in sorted(reported.items()):
        row = rows[_store.address_id(address)]
        _store.set_client_block(conn, row["address_id"], _stored(block, ts))
        _claim_event(conn, row, block, ts)
    for address, instance in sorted(set(spenders)):
        if address in reported or not instance:
            continue
        spender = rows.get(_store.address_id(address))
        stored = _load(spender)
        if spender is not None and stored is not None and stored.get("instance") == instance:
            _store.set_client_block(conn, spender["address_id"], None)


def current(row: Mapping[Any, Any], now_ts: float) -> dict[str, Any] | None:
    """The agent's ``client_block`` for reads (``{policy, limit, spent, resets_at, at, source}``) while current."""
    stored = _load(row)
    if stored is None:
        return None
    seen = int(stored.get("seen") or 0)
    resets_at = parse_iso(stored.get("resets_at"))
    if resets_at is not None and resets_at <= now_ts:
        return None
    if resets_at is None and now_ts - seen > UNTIMED_SECONDS:
        return None
    return {k: stored.get(k) for k in ("policy", "limit", "spent", "resets_at", "at", "source")}


def _stored(block: ClientBlock, ts: int) -> dict[str, Any]:
    return {
        "policy": block.policy, "limit": money(block.limit) if block.limit is not None else None,
        "spent": money(block.spent) if block.spent is not None else None, "resets_at": iso(block.resets_at),
        "at": iso(block.at if block.at is not None else ts), "source": block.source, "instance": block.instance,
        "seen": ts,
    }


def _claim_event(conn: Connection, row: Mapping[Any, Any], block: ClientBlock, ts: int) -> None:
    policy = block.policy or block.source
    window = int(block.resets_at) if block.resets_at is not None else ts - ts % _DAY
    if not _store.claim_alert(conn, row["address_id"], policy[:64], window, "client", ts):
        return
    stored = _stored(block, ts)
    data = {"agent": row["address"], "source": "client", "client_source": block.source, "policy": block.policy,
            "limit": stored["limit"], "spent": stored["spent"], "resets_at": stored["resets_at"], "at": stored["at"]}
    _store.add_event(conn, row["org"], row["address_id"], "agent.blocked", data, ts)


def _load(row: Mapping[Any, Any] | None) -> dict[str, Any] | None:
    raw = row.get("client_block") if row is not None else None
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
