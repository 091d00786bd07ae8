"""Tell the gateway which agents this process stopped on its own (the batch-level ``blocks`` field).

The gateway only sees spend; when the budget here refuses calls because the lease ran
out, a ``local_limits`` cap was reached or the process failed closed, nobody looking at
the gateway would know. Every heartbeat request therefore carries the blocks that hold
right now (see ``docs/protocol.md``). Each is sent with every request while it holds:
the gateway clears a client block when the same process sends spend for the agent
without it, so a request that left it out would lift it there.

A block that has not reached the gateway yet makes a heartbeat due even when there is
no spend to send (a zero-cost probe entry carries it).
"""

from __future__ import annotations

import time
from typing import Any

from .._budget import LEASE, LOCAL, UNREACHABLE, Budget, Block
from .._protocol import MAX_BLOCKS, client_block

#: Budget block source -> the wire's ``source``.
_SOURCES = {LEASE: "lease", LOCAL: "local", UNREACHABLE: "fail_closed"}
Key = tuple[str, str, str | None, float | None]


class BlockReports:
    def __init__(self, instance: str) -> None:
        self.instance = instance
        #: When each current block was first seen here (its ``at``).
        self._since: dict[Key, float] = {}
        self._delivered: set[Key] = set()

    def current(self, budget: Budget) -> tuple[list[Key], list[dict[str, Any]]]:
        """The blocks that hold now, as keys and wire items (at most ``MAX_BLOCKS``)."""
        if not budget.armed:
            self._forget(set())
            return [], []
        now = time.time()
        keys: list[Key] = []
        wire: list[dict[str, Any]] = []
        for agent, block in budget.local_blocks()[:MAX_BLOCKS]:
            key = _key(agent, block)
            at = self._since.setdefault(key, now)
            keys.append(key)
            item = client_block(agent, key[1], block.policy, block.limit, block.spent, block.resets_at, at)
            item["instance"] = self.instance
            wire.append(item)
        self._forget(set(keys))
        return keys, wire

    def unreported(self, budget: Budget) -> list[str]:
        """Agents with a block the gateway has not acknowledged yet."""
        if not budget.armed:
            return []
        return sorted({agent for agent, block in budget.local_blocks() if _key(agent, block) not in self._delivered})

    def delivered(self, keys: list[Key]) -> None:
        self._delivered.update(keys)

    def _forget(self, current: set[Key]) -> None:
        for key in [k for k in self._since if k not in current]:
            del self._since[key]
        self._delivered &= current


def _key(agent: str, block: Block) -> Key:
    return agent, _SOURCES.get(block.source, "local"), block.policy, block.resets_at
