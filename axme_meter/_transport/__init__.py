"""Carry the in-process meter to the AXME gateway, and carry its budget answers back.

Public surface (re-exported by ``axme_meter``): :func:`flush` and :func:`status`.
:func:`install` wires the pieces into the core once, when ``axme_meter`` is imported:

* a meter listener (lease and local-limit accounting, and the sender's dirty flag);
* ``_guard.check`` (the pre-flight block check) when a gateway or local limits are configured;
* ``_attribution.intent_registrar`` (``POST /v1/mesh/intents``) when a gateway is configured;
* ``atexit`` flush, SIGTERM flush (chained), and fork handling.

Nothing here imports ``httpx`` or starts a thread: that waits for the first
priced call, the first flush or the first intent registration.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import _attribution, _config, _guard
from .._meter import CallRecord, meter
from . import _budget as budget

log = logging.getLogger("axme_meter")

_installed = False
_apply_lock = threading.RLock()
#: The live ``_sender.Sender`` (None in meter-only mode). Not named ``_sender``: importing that submodule rebinds the name.
_current: Any = None
#: The gateway the sender must talk to: (url, api key, spool dir), or None for no network.
#: The sender itself (and httpx, and the thread) is created on first need, not at import.
_want: tuple[str, str | None, Path | None] | None = None
_accounting = False
_mode = "meter-only"
_mode_reason = "AXME_GATEWAY_URL is not set"
_said: set[str] = set()
_prev_sigterm: Any = None
_sigterm_installed = False


def install() -> None:
    """Wire the transport into the core. Idempotent; re-applies itself on every ``configure()``."""
    global _installed
    with _apply_lock:
        if _installed:
            return
        _installed = True
        meter.add_listener(_on_record)
        _config.on_change(_apply)
        budget.waker = _wake_early
        os.register_at_fork(after_in_child=_after_fork_in_child)
        atexit.register(_at_exit)
        _apply(_config.settings)


def flush(timeout: float = 5.0) -> bool:
    """Send all unsent spend to the gateway now. Bounded by ``timeout`` seconds.

    Returns True when the gateway acknowledged everything (or there is no gateway:
    meter-only mode has nothing to deliver). On False the rest is on disk in the
    spool and is re-sent by the background sender or the next process.
    """
    sender = _sender_now()
    if sender is None:
        return True
    return bool(sender.flush(timeout))


def status() -> dict[str, object]:
    """Where the transport stands: mode, gateway, pending entries, spool, blocks. Never the API key."""
    out: dict[str, object] = {"mode": _mode, "reason": _mode_reason}
    sender = _current
    if sender is not None:
        out.update(sender.status())
    out.update(budget.status())
    return out


def current_sender() -> Any:
    """The live sender (None in meter-only mode); for status tools and tests."""
    return _current


def blocked_agents() -> list[str]:
    """Agents currently blocked in this process (by the gateway, the lease or a local limit)."""
    return sorted(budget.status()["blocked"])  # type: ignore[arg-type]


# ---------------------------------------------------------------------- wiring


def _on_record(rec: CallRecord) -> None:
    """Meter listener: runs on the caller's thread after every record. O(1), never raises."""
    try:
        sender = _current
        if sender is None:
            if _want is not None:
                _sender_now().note_record()
        elif not sender._dirty:  # noqa: SLF001 - inlined hot path
            sender.note_record()
        if _accounting:
            budget.account(rec.agent, rec.intent, rec.cost_pico, rec.at)
    except Exception:  # pragma: no cover - a listener must never break the caller's call
        log.exception("axme_meter: transport listener failed")


def _wake_early() -> None:
    sender = _current
    if sender is not None:
        sender.wake_early()


def _sender_now() -> Any:
    """The sender, created on first need (first record, flush, or intent registration)."""
    global _current
    sender = _current
    if sender is None and _want is not None:
        with _apply_lock:
            if _current is None and _want is not None:
                from ._sender import Sender

                _current = Sender(*_want)
            sender = _current
    return sender


def _register_intent(agent: str, intent_id: str, labels: Mapping[str, str]) -> None:
    sender = _sender_now()
    if sender is not None:
        sender.register_intent(agent, intent_id, dict(labels))
    else:
        budget.check(agent, intent_id)


def _say_once(key: str, level: int, message: str, *args: object) -> None:
    if key not in _said:
        _said.add(key)
        log.log(level, message, *args)


def _apply(settings: _config.Settings) -> None:
    """(Re)build the transport from settings: mode, hooks, sender."""
    global _current, _want, _accounting, _mode, _mode_reason
    with _apply_lock:
        limits_on = budget.configure_limits(settings.local_limits)
        url: str | None = None
        if settings.gateway_url:
            from ._gateway_http import validate_url

            try:
                url = validate_url(settings.gateway_url, allow_insecure_http=settings.allow_insecure_http)
            except ValueError as exc:
                _mode, _mode_reason = "refused", str(exc)
                _say_once(f"refused:{settings.gateway_url}", logging.ERROR, "axme_meter: %s Running meter-only (no network).", exc)
        else:
            _mode, _mode_reason = "meter-only", "AXME_GATEWAY_URL is not set"
            _say_once("meter-only", logging.INFO, "axme_meter: no AXME_GATEWAY_URL; running meter-only (spend is "
                      "metered in-process, nothing is sent over the network)")
        if url is not None:
            _mode, _mode_reason = "gateway", url
            if not settings.api_key:
                _say_once("nokey", logging.WARNING, "axme_meter: AXME_GATEWAY_URL is set but AXME_API_KEY is not; "
                          "the gateway will refuse heartbeats")
        want = (url, settings.api_key, settings.spool_dir) if url is not None else None
        if want != _want:
            old, _current, _want = _current, None, want
            if old is not None:
                # Different gateway, key or spool: park the old state on disk (no network inside configure()).
                old.close(network=False)
            if want is not None and meter_has_pending():
                _sender_now().note_record()
        elif _current is not None:
            _current.poke()
        if settings.fail_mode != "closed" or url is None:
            budget.set_unreachable(None)  # switching to fail-open (or off the gateway) lifts a fail-closed block
        _accounting = url is not None or limits_on
        _guard.check = budget.check if _accounting else None
        _attribution.intent_registrar = _register_intent if url is not None else None
        if url is not None:
            _install_sigterm()


def meter_has_pending() -> bool:
    """Spend recorded before a gateway was configured is sent once one is."""
    return bool(meter._pending)  # noqa: SLF001 - a read-only peek; draining stays with the sender


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
        helper = threading.Thread(target=_final_flush, kwargs={"close": False}, name="axme-meter-sigterm", daemon=True)
        helper.start()
        helper.join(float(_config.settings.shutdown_timeout) + 1.0)
    finally:
        previous = _prev_sigterm
        if callable(previous):
            previous(signum, frame)
        else:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)


def _final_flush(close: bool = True) -> None:
    """One bounded attempt; leftovers stay in the spool for the next process.

    ``close=False`` (SIGTERM) keeps the sender running: a graceful shutdown may still make calls,
    and they must still be checkpointed; the atexit flush closes it.
    """
    sender = _current
    if sender is None:
        want = _want
        if want is None:
            return
        from ._spool import has_orphans

        if not has_orphans(want[2], want[0]):
            return  # never used and nothing left by dead processes: exit without network or imports
        sender = _sender_now()
    try:
        timeout = float(_config.settings.shutdown_timeout)
        delivered = sender.close(timeout=timeout, network=True) if close else sender.flush_keep_running(timeout)
        if not delivered:
            log.warning("axme_meter: not all spend reached the gateway before exit; it stays in the spool "
                        "and the next process will send it")
    except Exception:  # pragma: no cover - exit paths must never raise
        log.exception("axme_meter: final flush failed")


def _at_exit() -> None:
    _final_flush()


def _after_fork_in_child() -> None:
    """The child starts clean: its own sender, lock and ids; the parent keeps sending its own data."""
    global _apply_lock, _current
    _apply_lock = threading.RLock()
    old, _current = _current, None  # the child's own sender is created on its first need
    if old is not None:
        old.forget_after_fork()
    if _want is not None:
        _register_multiprocessing_flush()


class _MultiprocessingHook:
    """A weak-referenceable key for ``multiprocessing.util.register_after_fork``."""


_mp_hook = _MultiprocessingHook()


def _register_multiprocessing_flush() -> None:
    """``multiprocessing`` fork children leave via ``os._exit`` (no atexit): flush from its finalizers.

    The child's bootstrap clears the finalizer registry right after fork, so the
    finalizer is registered from an after-fork hook, which runs after that clear.
    """
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return
    try:
        util.register_after_fork(_mp_hook, lambda _hook: util.Finalize(None, _final_flush, exitpriority=10))
    except Exception:  # pragma: no cover - best effort
        pass


def _reset_for_tests() -> None:
    """Park the sender without network and forget all budget state (tests only)."""
    global _current, _want
    with _apply_lock:
        old, _current, _want = _current, None, None
        if old is not None:
            old.close(network=False)
        budget.reset()
        _apply(_config.settings)


__all__ = ["blocked_agents", "flush", "install", "status"]
