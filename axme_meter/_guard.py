"""The pre-flight hook: the one check every metered call makes before any HTTP is sent.

The transport installs :data:`check` when a gateway or local limits are configured;
it raises :class:`axme_meter.BudgetExceeded` for a blocked agent. Kept in its own
tiny module so the client's hot path reads one global and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

#: ``check(agent, intent)``: raise ``BudgetExceeded`` to stop the call; must cost well under 1 µs when not blocked.
check: Callable[[str, str | None], None] | None = None
