"""Local budget state: which agents are blocked, and the lease that bounds overshoot.

Two paths touch this module and both must be cheap:

* :func:`check` runs before *every* metered call (installed as ``_guard.check``).
  With nothing blocked it reads one module global and returns.
* :func:`account` runs after every priced call (a meter listener). It keeps a
  running per-agent spend counter and compares the spend the gateway has not
  seen yet against the last ``remaining`` the gateway reported (the *lease*; our
  gateway also sends ``lease``, this process's share when several processes meter
  one agent, and that is used instead so N processes cannot overshoot N-fold).
  If the next call would exceed it, the agent is blocked locally; when half of
  it is used, the sender is woken for an early heartbeat.

Blocks come from four sources, kept apart so one source lifting never lifts another:
``gateway`` (a 429/403, a non-active state or a policy with ``remaining <= 0``),
``lease`` (local prediction), ``local`` (``local_limits``) and the process-wide
fail-closed block when the gateway has been unreachable too long.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING

from .._errors import BudgetExceeded
from .._money import format_usd, to_decimal

if TYPE_CHECKING:  # imported lazily: this module loads with ``import axme_meter`` and must stay cheap
    from ._limits import LocalLimits
    from ._wire import AgentState, BlockError, PolicyState

GATEWAY, LEASE, LOCAL = "gateway", "lease", "local"


class Block:
    """Why an agent (or one of its intents) may not spend. Amounts in pico-dollars.

    A plain slotted class, not a dataclass: defining dataclasses costs import time.
    """

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
            self.message or _describe(agent, self),
            agent=agent,
            intent=intent,
            policy=self.policy,
            limit=to_decimal(self.limit) if self.limit is not None else None,
            spent=to_decimal(self.spent) if self.spent is not None else None,
            resets_at=datetime.fromtimestamp(self.resets_at, timezone.utc) if self.resets_at is not None else None,
            state=self.state,
        )


def _describe(agent: str, block: Block) -> str:
    if block.policy and block.limit is not None:
        text = f"{agent} is over {block.policy}"
        if block.source == LEASE:
            text = f"{agent} would exceed the remaining budget of {block.policy}"
        # Count policies (max_intents_per_day) travel through the same parser: show them as counts.
        fmt = format_usd if block.policy.endswith("_usd") else (lambda pico: f"{to_decimal(pico):f}")
        if block.spent is not None:
            text += f": {'spent' if block.policy.endswith('_usd') else 'used'} {fmt(block.spent)} of {fmt(block.limit)}"
        else:
            text += f" (limit {fmt(block.limit)})"
    elif block.state not in ("blocked", "active"):
        text = f"{agent} is {block.state} on the AXME gateway"
    else:
        text = f"{agent} is blocked" + (f" by {block.policy}" if block.policy else "")
    if block.resets_at is not None:
        from ._wire import iso

        text += f"; resets {iso(block.resets_at)}"
    if block.source == LOCAL:
        text += " (local limit)"
    return text


class Lease:
    """The gateway's last ``remaining`` for an agent, and our spend counter when that batch was taken."""

    __slots__ = ("remaining", "base", "policy", "woke")

    def __init__(self, remaining: int, base: int, policy: PolicyState) -> None:
        self.remaining = remaining
        self.base = base
        self.policy = policy
        self.woke = False


# --- state (module globals: the hot path reads them without attribute lookups on an object) ---
_lock = threading.Lock()
_armed = False
_agents: dict[str, dict[str, Block]] = {}
_intents: dict[tuple[str, str], Block] = {}
_global: Block | None = None
_spent: dict[str, int] = {}
#: Cost of each agent's last call: the predictor for "would the next call exceed the lease".
_last: dict[str, int] = {}
_leases: dict[str, Lease] = {}
#: Agents that have spent in this process (or that a gateway answer covered): the first spend of
#: any other agent asks the gateway at once.
_heard: set[str] = set()
_limits: LocalLimits | None = None
_limits_source: dict[str, Decimal] = {}
_limits_active = False
#: Set by the transport: wakes the sender for an early heartbeat. Must not block.
waker: Callable[[], None] | None = None


def check(agent: str, intent: str | None) -> None:
    """Raise :class:`BudgetExceeded` if ``agent`` (or ``intent``) is blocked. The pre-flight hook."""
    if _armed:
        _check_slow(agent, intent)


def _check_slow(agent: str, intent: str | None) -> None:
    now = time.time()
    if _global is not None:
        raise _global.error(agent, intent)
    blocks = _agents.get(agent)
    if blocks:
        for source, block in list(blocks.items()):
            if not block.expired(now):
                raise block.error(agent, intent)
            _lift(agent, source)
    if intent is not None and _intents:
        block = _intents.get((agent, intent))
        if block is not None:
            if not block.expired(now):
                raise block.error(agent, intent)
            with _lock:
                _intents.pop((agent, intent), None)
                _rearm()


def _rearm() -> None:
    global _armed
    _armed = bool(_agents or _intents or _global is not None)


def _set(agent: str, block: Block) -> None:
    """Under ``_lock``."""
    global _armed
    _agents.setdefault(agent, {})[block.source] = block
    _armed = True


def _lift(agent: str, source: str) -> None:
    with _lock:
        _lift_locked(agent, source)


def _lift_locked(agent: str, source: str) -> None:
    blocks = _agents.get(agent)
    if blocks and blocks.pop(source, None) is not None:
        if source == GATEWAY:
            # A reset (resets_at passed) or an unblock invalidates the old lease, too.
            _leases.pop(agent, None)
            blocks.pop(LEASE, None)
        if not blocks:
            del _agents[agent]
    _rearm()


def account(agent: str, intent: str | None, cost: int, at: float) -> None:
    """Meter listener body: O(1) spend accounting, lease and local-limit checks.

    Fast path (no lease for this agent, no local limits): two dict writes without
    the lock, because a lock costs several hundred ns here. A lost update in a
    thread race is harmless there: the counter only matters relative to a lease's
    ``base``, and a lease is taken from a snapshot of whatever the counter holds.
    """
    global _armed
    if agent not in _heard:
        # First spend of an agent the gateway has not told us about: ask now (no lease yet, so
        # nothing bounds a fast loop until the first answer), not after the batching delay.
        _heard.add(agent)
        if waker is not None:
            waker()
    if not _limits_active and agent not in _leases:
        _spent[agent] = _spent.get(agent, 0) + cost
        _last[agent] = cost
        return
    wake = False
    with _lock:
        spent = _spent.get(agent, 0) + cost
        _spent[agent] = spent
        _last[agent] = cost
        lease = _leases.get(agent)
        if lease is not None:
            unsent = spent - lease.base
            if unsent + cost > lease.remaining:
                _set(agent, _lease_block(lease, unsent))
                wake = True
            elif not lease.woke and 2 * unsent >= lease.remaining:
                lease.woke = True
                wake = True
        if _limits_active and _limits is not None:
            for breach in _limits.account(agent, intent, cost, at):
                block = Block(LOCAL, breach.policy, breach.limit, breach.spent, breach.resets_at)
                if breach.intent is not None:
                    _intents[(agent, breach.intent)] = block
                    _armed = True
                else:
                    _set(agent, block)
    if wake and waker is not None:
        waker()


def _lease_block(lease: Lease, unsent: int) -> Block:
    policy = lease.policy
    spent = (policy.spent or 0) + unsent if policy.spent is not None else None
    return Block(LEASE, policy.name, policy.limit, spent, policy.resets_at)


def snapshot_spent() -> dict[str, int]:
    """Spend counters at the moment a batch is taken; the answer's ``remaining`` covers exactly these."""
    with _lock:
        return dict(_spent)


def apply_answer(agents: Mapping[str, AgentState], base: Mapping[str, int]) -> None:
    """Turn a heartbeat answer into blocks, unblocks and fresh leases."""
    global _armed
    now = time.time()
    with _lock:
        _heard.update(agents)
        for agent, answer in agents.items():
            exhausted = [p for p in answer.policies if p.intent_id is None and p.remaining is not None and p.remaining <= 0]
            for p in answer.policies:
                if p.intent_id is not None and p.remaining is not None and p.remaining <= 0:
                    _intents[(agent, p.intent_id)] = Block(GATEWAY, p.name, p.limit, p.spent, p.resets_at)
                    _armed = True
            if answer.state != "active" or exhausted:
                p = exhausted[0] if exhausted else None
                _set(
                    agent,
                    Block(
                        GATEWAY,
                        p.name if p else None,
                        p.limit if p else None,
                        p.spent if p else None,
                        # A paused or killed agent stays blocked until the gateway says otherwise.
                        p.resets_at if p and answer.state == "active" else None,
                        state=answer.state if answer.state != "active" else "blocked",
                    ),
                )
                continue
            _lift_locked(agent, GATEWAY)
            # Only money policies make a lease (an intents-per-day "remaining" is a count, not dollars).
            leased = [p for p in answer.policies if p.intent_id is None and p.remaining is not None
                      and p.name.endswith("_usd") and (p.resets_at is None or p.resets_at > now)]
            if not leased:
                _leases.pop(agent, None)
                _lift_locked(agent, LEASE)
                continue
            # The gateway's ``lease`` is our share when several processes meter this agent; without it
            # (AXME Cloud) every process leases all of ``remaining``.
            tightest = min(leased, key=_leasable)
            lease = _leases[agent] = Lease(_leasable(tightest), base.get(agent, 0), tightest)
            unsent = _spent.get(agent, 0) - lease.base
            if unsent > 0 and unsent * 2 >= lease.remaining:
                lease.woke = True
            # Would the next call (predicted by the last one) still overshoot?  Keep the lease block.
            if unsent + _last.get(agent, 0) > lease.remaining:
                _set(agent, _lease_block(lease, unsent))
            else:
                _lift_locked(agent, LEASE)


def _leasable(p: PolicyState) -> int:
    """What this process may spend of a policy before the gateway sees it: ``lease`` if sent, else ``remaining``."""
    remaining = p.remaining or 0
    return min(p.lease, remaining) if p.lease is not None else remaining


def apply_error(err: BlockError, fallback_agent: str | None = None, intent: str | None = None) -> Block | None:
    """A ``budget_exceeded`` 429 (or a 403 kill) blocks the agent it names."""
    agent = err.agent or fallback_agent
    if agent is None:
        return None
    state = "killed" if err.code in ("agent_killed", "killed") else "blocked"
    block = Block(GATEWAY, err.policy, err.limit, err.spent, err.resets_at, state=state, message=err.message or None)
    with _lock:
        _set(agent, block)
    return block


def set_unreachable(reason: str | None) -> None:
    """Fail closed (``reason`` given) or lift the fail-closed block (``None``)."""
    global _global
    with _lock:
        _global = Block(GATEWAY, "gateway_unreachable", None, None, None, message=reason) if reason else None
        _rearm()


def blocked_by_gateway() -> list[str]:
    """Agents the gateway (or the lease) blocked: the sender asks about them each interval."""
    with _lock:
        return [a for a, blocks in _agents.items() if GATEWAY in blocks or LEASE in blocks]


def configure_limits(limits: Mapping[str, Decimal]) -> bool:
    """Replace the local limits (only when they changed: spend so far must survive unrelated
    ``configure()`` calls); returns whether any is active."""
    global _limits, _limits_source, _limits_active
    with _lock:
        if dict(limits) == _limits_source:
            return _limits_active
        from ._limits import LocalLimits

        _limits_source = dict(limits)
        _limits = LocalLimits(limits)
        _limits_active = _limits.active
        for agent in [a for a, b in _agents.items() if LOCAL in b]:
            _lift_locked(agent, LOCAL)
        for key in [k for k, b in _intents.items() if b.source == LOCAL]:
            del _intents[key]
        _rearm()
        return _limits_active


def armed() -> bool:
    return _armed


def status() -> dict[str, object]:
    """Blocked agents and leases, for ``axme_meter`` status output and tests."""
    with _lock:
        return {
            "fail_closed": _global is not None,
            "blocked": {a: sorted(b) for a, b in _agents.items()},
            "blocked_intents": [f"{a} {i}" for a, i in _intents],
            "leases": {a: str(to_decimal(l.remaining - (_spent.get(a, 0) - l.base))) for a, l in _leases.items()},
        }


def reset() -> None:
    """Forget every block, lease and counter (tests; ``configure`` never calls this)."""
    global _global, _limits
    with _lock:
        _agents.clear()
        _intents.clear()
        _global = None
        _spent.clear()
        _last.clear()
        _leases.clear()
        _heard.clear()
        if _limits is not None:
            from ._limits import LocalLimits

            _limits = LocalLimits(_limits_source)
        _rearm()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = ["Block", "Lease", "account", "apply_answer", "apply_error", "check", "reset", "status"]
