"""Enforcement: one :class:`Budget` per process decides whether an agent may spend.

It holds the blocks the gateway reported, this process's lease of the remaining
budget, and the in-process ``local_limits``; the client calls it before and
after every metered call. It works with no gateway at all (local limits only).
"""

from ._blocks import GATEWAY, LEASE, LOCAL, UNREACHABLE, Block
from ._budget import Budget, Lease

__all__ = ["GATEWAY", "LEASE", "LOCAL", "UNREACHABLE", "Block", "Budget", "Lease"]
