"""The process runtime: the budget, the heartbeat sender and the mode, built from settings.

``import axme_meter`` creates nothing. The default :class:`Runtime` is made on
first use: the first metered client, ``configure()``, ``flush()``, an intent
scope or ``transport_status()``. Only then are the exit flush, the SIGTERM
flush and the fork handlers installed, so the gateway and CLI processes, which
never build a client, never get them.

The sender (and ``httpx``, and the thread) is created later still, on the first
priced call, flush or intent registration with a gateway configured.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _config
from ._budget import Budget
from ._budget._grants import COST_UNKNOWN, NEED_GRANT, Reservation
from ._errors import BudgetExceeded
from ._meter import CallRecord, meter

if TYPE_CHECKING:
    from ._transport._flush_result import FlushResult
    from ._transport._sender import Sender

#: How long a call may wait for the gateway to grant budget (first call of an agent, or its slice ran out).
GRANT_WAIT = 10.0
#: How long calls of a new agent wait for its first call's cost, which predicts theirs (see ``_budget/_grants.py``).
FIRST_COST_WAIT = 60.0

log = logging.getLogger("axme_meter")

#: (gateway url, api key, spool dir): the identity a sender is built for.
Target = tuple[str, str | None, Path | None]


class Runtime:
    """One process's enforcement and delivery. The client calls it directly on every metered call."""

    __slots__ = ("budget", "accounting", "mode", "mode_reason", "ungranted_calls", "_lock", "_sender", "_target", "_said")

    def __init__(self) -> None:
        self.budget = Budget()
        #: Hot-path flag: does a priced call need budget accounting (a gateway or local limits)?
        self.accounting = False
        self.mode = "meter-only"
        self.mode_reason = "AXME_GATEWAY_URL is not set"
        #: Calls that went out without a grant because the gateway could not be asked (``fail_mode="open"``).
        self.ungranted_calls = 0
        self._lock = threading.RLock()
        self._sender: Sender | None = None
        self._target: Target | None = None
        self._said: set[str] = set()

    # ------------------------------------------------------------------ the client's calls

    def admit(self, agent: str, intent: str | None) -> Reservation | None:
        """Before a call: raise ``BudgetExceeded`` if the agent may not spend, else reserve its predicted
        cost from this process's grant, asking the gateway first (bounded) when what is held does not cover it."""
        try:
            reservation = self.budget.admit(agent, intent)
            if reservation is NEED_GRANT or reservation is COST_UNKNOWN:
                return self._admit_with_grant(agent, intent)
        except BudgetExceeded:
            self._on_refusal()
            raise
        return reservation  # type: ignore[return-value]

    async def admit_async(self, agent: str, intent: str | None) -> Reservation | None:
        """:meth:`admit` for async clients: a wait for the gateway runs in a thread, never on the event loop."""
        try:
            reservation = self.budget.admit(agent, intent)
            if reservation is NEED_GRANT or reservation is COST_UNKNOWN:
                import asyncio  # lazily: only async clients get here

                return await asyncio.to_thread(self._admit_with_grant, agent, intent)
        except BudgetExceeded:
            self._on_refusal()
            raise
        return reservation  # type: ignore[return-value]

    def _on_refusal(self) -> None:
        """A refused process often exits (or crashes) next: put its unsent spend on disk now, not within 0.5 s."""
        sender = self._sender
        if sender is not None and sender.dirty:
            try:
                sender.checkpoint()
            except Exception:  # pragma: no cover - never turn a refusal into another error
                log.exception("axme_meter: could not checkpoint unsent spend")

    def _admit_with_grant(self, agent: str, intent: str | None) -> Reservation | None:
        """The slow path of :meth:`admit`: wait for a new agent's first cost, or ask the gateway for a grant."""
        deadline = time.monotonic() + GRANT_WAIT
        probe_deadline = time.monotonic() + FIRST_COST_WAIT
        while True:
            reservation = self.budget.admit(agent, intent)  # raises when blocked, or when the gateway refused
            if reservation is COST_UNKNOWN:
                if time.monotonic() >= probe_deadline:
                    return None  # the first call is taking very long: don't hold every other call back for it
                self.budget.wait_for_cost(agent, probe_deadline - time.monotonic())
                continue
            if reservation is not NEED_GRANT:
                return reservation  # type: ignore[return-value]
            if not self.budget.granting:
                return None  # a gateway without grants: leases bound the spend, as before grants
            if time.monotonic() >= deadline:
                raise BudgetExceeded(
                    f"{agent}: the gateway granted no budget for this call within {GRANT_WAIT:g}s (the agent's "
                    "remaining budget is spread over its other running processes); retry shortly",
                    agent=agent, intent=intent, policy=None)
            if not self._ask_for_grant(agent, deadline):
                # The gateway could not grant (down, or it refused the key), and fail_mode is "open" (a fail-closed
                # block would have raised in admit above): the call goes out unbounded, and is counted.
                self.ungranted_calls += 1
                self._say_once("ungranted", logging.WARNING, "axme_meter: the gateway could not be asked for budget, "
                               "so calls go out without a grant (fail_mode='open'); see transport_status()['state'] "
                               "and ['ungranted_calls']")
                return None

    def _ask_for_grant(self, agent: str, deadline: float) -> bool:
        """One grant request per agent at a time (the others wait for its answer); False if unreachable."""
        event, leader = self.budget.begin_ask(agent)
        if not leader:
            event.wait(max(0.0, deadline - time.monotonic()))
            return True
        try:
            sender = self.sender()
            return sender is not None and sender.request_grant(agent)
        except Exception:  # metering must never break the user's call: as if unreachable
            log.exception("axme_meter: grant request failed")
            return False
        finally:
            self.budget.end_ask(agent, event)

    def release(self, reservation: Reservation | None) -> None:
        """The call failed before it could cost anything: its reservation goes back to the grant."""
        if reservation is not None:
            self.budget.release(reservation)

    def book(self, rec: CallRecord, reservation: Reservation | None = None) -> None:
        """Record a priced call (on the caller's thread): the meter, the grant it spent from, the budget, the sender."""
        if reservation is None:
            meter.record(rec)
            ask = False
        else:
            ask = self.budget.record_reserved(rec, reservation, meter)
        self._after_record(rec)
        if ask:
            self.wake_sender()

    def _after_record(self, rec: CallRecord) -> None:
        """After a priced call was recorded: budget accounting and the sender's dirty flag."""
        sender = self._sender
        if sender is None:
            if self._target is not None:
                self.sender().note_record()
        elif not sender.dirty:
            sender.note_record()
        if self.accounting and self.budget.account(rec.agent, rec.intent, rec.cost_pico, rec.at):
            self.wake_sender()

    def register_intent(self, agent: str, intent_id: str, labels: Mapping[str, str]) -> None:
        """``POST /v1/mesh/intents`` when a gateway is configured; raise ``BudgetExceeded`` if refused."""
        if self._target is None:
            self.budget.check(agent, intent_id)
            return
        self.sender().register_intent(agent, intent_id, dict(labels))

    @property
    def registers_intents(self) -> bool:
        return self._target is not None

    # ------------------------------------------------------------------ public surface

    def flush(self, timeout: float = 5.0) -> FlushResult:
        """Send all unsent spend now, bounded by ``timeout``; truthy when the gateway has all of it."""
        sender = self.sender()
        if sender is None:
            from ._transport._flush_result import FlushResult

            return FlushResult(state=self.mode)
        sender.flush(timeout)
        return sender.result()

    def status(self) -> dict[str, object]:
        """Mode, gateway, pending entries, spool and blocks. Never the API key."""
        out: dict[str, object] = {"mode": self.mode, "reason": self.mode_reason, "ungranted_calls": self.ungranted_calls}
        sender = self._sender
        if sender is not None:
            out.update(sender.status())
        out.setdefault("state", "ok" if self.mode == "gateway" else self.mode)
        out.update(self.budget.status())
        return out

    def blocked_agents(self) -> list[str]:
        """Agents blocked in this process (by the gateway, the lease or a local limit)."""
        return self.budget.blocked_agents()

    def current_sender(self) -> Sender | None:
        return self._sender

    # ------------------------------------------------------------------ settings

    def apply(self, settings: _config.Settings) -> None:
        """(Re)build mode and sender from settings; called at creation and by every ``configure()``."""
        with self._lock:
            limits_on = self.budget.configure_limits(settings.local_limits)
            url = self._gateway_url(settings)
            target: Target | None = (url, settings.api_key, settings.spool_dir) if url is not None else None
            if target != self._target:
                old, self._sender, self._target = self._sender, None, target
                if old is not None:
                    # Different gateway, key or spool: park the old state on disk (no network inside configure()).
                    old.close(network=False)
                _forget_gateway_prices()  # another gateway (or none): it sends its own table
                self.budget.forget_grants()
                self.budget.granting = target is not None  # until the gateway shows it has no grant endpoint
                if target is not None and meter.has_pending():
                    self.sender().note_record()  # spend recorded before a gateway was configured is sent now
            elif self._sender is not None:
                self._sender.poke()
            if settings.fail_mode != "closed" or url is None:
                self.budget.set_unreachable(None)  # fail-open (or no gateway) lifts a fail-closed block
            self.accounting = url is not None or limits_on
            if url is not None:
                _install_sigterm()

    def _gateway_url(self, settings: _config.Settings) -> str | None:
        if not settings.gateway_url:
            self.mode, self.mode_reason = "meter-only", "AXME_GATEWAY_URL is not set"
            self._say_once("meter-only", logging.INFO, "axme_meter: no AXME_GATEWAY_URL; running meter-only (spend is "
                           "metered in-process, nothing is sent over the network)")
            return None
        from ._transport._gateway_http import validate_url

        try:
            url = validate_url(settings.gateway_url, allow_insecure_http=settings.allow_insecure_http)
        except ValueError as exc:
            self.mode, self.mode_reason = "refused", str(exc)
            self._say_once(f"refused:{settings.gateway_url}", logging.ERROR, f"axme_meter: {exc} Running meter-only (no network).")
            return None
        self.mode, self.mode_reason = "gateway", url
        if not settings.api_key:
            self._say_once("nokey", logging.WARNING, "axme_meter: AXME_GATEWAY_URL is set but AXME_API_KEY is not; "
                           "the gateway will refuse heartbeats")
        return url

    def _say_once(self, key: str, level: int, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            log.log(level, message)

    # ------------------------------------------------------------------ the sender

    def sender(self) -> Sender | None:
        """The sender, created on first need; None in meter-only mode."""
        sender = self._sender
        if sender is None and self._target is not None:
            with self._lock:
                if self._sender is None and self._target is not None:
                    from ._transport._sender import Sender

                    self._sender = Sender(*self._target, budget=self.budget)
                sender = self._sender
        return sender

    def refused_for_loop(self) -> None:
        """A request was refused for repeating itself: its count (no spend) goes to the gateway soon."""
        sender = self.sender()
        if sender is not None:
            sender.note_record()  # the count is unsent data even though nothing was spent
            sender.wake_early()
        self._on_refusal()

    def wake_sender(self) -> None:
        """Heartbeat soon (half a lease or grant used, a loop detected); never on the caller's thread."""
        sender = self._sender
        if sender is not None:
            sender.wake_early()

    def final_flush(self, close: bool = True) -> None:
        """One bounded attempt at exit (or SIGTERM); leftovers stay in the spool for the next process.

        ``close=False`` (SIGTERM) keeps the sender running: a graceful shutdown may still make calls.
        """
        sender = self._sender
        if sender is None:
            target = self._target
            if target is None:
                return
            from ._transport._spool import has_orphans

            if not has_orphans(target[2], target[0], target[1]):
                return  # never used and nothing left by dead processes: exit without network or imports
            sender = self.sender()
            assert sender is not None
        try:
            timeout = float(_config.settings.shutdown_timeout)
            delivered = sender.close(timeout=timeout, network=True) if close else sender.flush(timeout, attempts=1)
            if not delivered:
                log.warning("axme_meter: not all spend reached the gateway before exit; it stays in the spool "
                            "and the next process will send it")
        except Exception:  # pragma: no cover - exit paths must never raise
            log.exception("axme_meter: final flush failed")

    def close(self) -> None:
        """Park the sender's state on disk without network (tests; switching runtimes)."""
        with self._lock:
            old, self._sender, self._target = self._sender, None, None
        if old is not None:
            old.close(network=False)
        _forget_gateway_prices()

    def after_fork_in_child(self) -> None:
        """The child starts clean: its own sender, lock and ids; the parent keeps sending its own data."""
        self._lock = threading.RLock()
        self.budget.after_fork_in_child()
        old, self._sender = self._sender, None  # the child's own sender is created on its first need
        if old is not None:
            old.forget_after_fork()
        if self._target is not None:
            _register_multiprocessing_flush(self)


def _forget_gateway_prices() -> None:
    """Back to this package's own price table (``_pricing`` is imported only if a table was installed)."""
    pricing = sys.modules.get("axme_meter._pricing._table")
    if pricing is not None:
        pricing.forget_gateway_table()


# ---------------------------------------------------------------------- the default instance

_default: Runtime | None = None
_install_lock = threading.Lock()


def default() -> Runtime:
    """The process's runtime, created (and its exit and fork hooks installed) on first use."""
    rt = _default
    if rt is None:
        rt = _install()
    return rt


def current() -> Runtime | None:
    """The runtime if one exists; never creates one (status tools, exit paths)."""
    return _default


def _install() -> Runtime:
    global _default
    with _install_lock:
        if _default is None:
            _config.check()  # a bad environment variable: one ConfigError here, never on a call
            rt = Runtime()
            rt.apply(_config.settings)
            _default = rt
            atexit.register(_at_exit)
            os.register_at_fork(after_in_child=_after_fork_in_child)
        return _default


def replace_default() -> Runtime:
    """Close the default runtime (no network) and start a fresh one: for tests that need a clean process state."""
    global _default
    old = default()
    old.close()
    with _install_lock:
        rt = Runtime()
        rt.apply(_config.settings)
        _default = rt
    return rt


def _at_exit() -> None:
    rt = _default
    if rt is not None:
        rt.final_flush()


def _after_fork_in_child() -> None:
    rt = _default
    if rt is not None:
        rt.after_fork_in_child()


# ---------------------------------------------------------------------- SIGTERM and multiprocessing

_prev_sigterm: Any = None
_sigterm_installed = False


def _install_sigterm() -> None:
    """Flush on SIGTERM, then hand over to whatever handler was there. Main thread only."""
    global _prev_sigterm, _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
        if previous is signal.SIG_IGN or previous is None:
            return  # someone chose to ignore SIGTERM (or a C handler owns it): leave it alone
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or signals unavailable
        return
    _prev_sigterm = previous
    _sigterm_installed = True


def _on_sigterm(signum: int, frame: Any) -> None:
    """Flush from a helper thread, bounded: the interrupted main thread may hold one of our locks."""
    try:
        rt = _default
        if rt is not None:
            helper = threading.Thread(target=rt.final_flush, kwargs={"close": False}, name="axme-meter-sigterm", daemon=True)
            helper.start()
            helper.join(float(_config.settings.shutdown_timeout) + 1.0)
    finally:
        previous = _prev_sigterm
        if callable(previous):
            previous(signum, frame)
        else:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)


class _MultiprocessingHook:
    """A weak-referenceable key for ``multiprocessing.util.register_after_fork``."""


_mp_hook = _MultiprocessingHook()


def _register_multiprocessing_flush(rt: Runtime) -> None:
    """``multiprocessing`` fork children leave via ``os._exit`` (no atexit): flush from its finalizers.

    The child's bootstrap clears the finalizer registry right after fork, so the
    finalizer is registered from an after-fork hook, which runs after that clear.
    """
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return
    try:
        util.register_after_fork(_mp_hook, lambda _hook: util.Finalize(None, rt.final_flush, exitpriority=10))
    except Exception:  # pragma: no cover - best effort
        pass
