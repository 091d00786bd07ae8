"""The heartbeat sender: one background thread, one batched request per interval.

Life of a cost:

1. ``meter.record`` puts it in a pending bucket; the meter listener marks the sender dirty.
2. Within :data:`CHECKPOINT_EVERY` the thread drains the meter into *open* entries
   (one per agent × intent, each with an idempotency id from birth) and writes
   the whole unsent state to the spool atomically. A SIGKILL after that loses nothing.
3. Once per interval (first time: within a second of the first call) the thread
   *freezes* the open entries and POSTs every frozen entry in ≤1000-entry batches.
4. Each entry's result decides (``_answers.py``): ``recorded``/``duplicate`` leave
   memory and disk; a final refusal (``conflict``, ``error`` such as ``forbidden``)
   is quarantined with its reason (``_quarantine.py``); anything else stays frozen
   and is re-sent under the same id (backoff with jitter, ``Retry-After`` honoured
   and capped). A request refused as a whole (403 / 413 / 422 without results) is
   split in halves until the refused entry stands alone, so one bad entry never
   holds back the others. A 401 keeps everything and retries slowly. The buffer is
   never cleared before the gateway answered for an entry.

While an entry is frozen and unacknowledged, new spend for the same agent ×
intent accumulates in one open entry next to it, so an outage costs at most two
entries per agent × intent in memory (plus one per ``MAX_ENTRY_USD`` of spend),
whatever the call rate or its length.

Spool and quarantine belong to one identity (gateway URL, key fingerprint): this
sender adopts only dead processes' spools of that identity (``_spool.py``).

Prices: the gateway is the fleet's price authority. When the sender starts (and when it first asks
for a grant or registers an intent), a background thread fetches ``GET /v1/prices`` and installs
that table for this process (under the user's own price file and ``extra_prices``); it fetches
again whenever a heartbeat answer carries another ``pricing_version``. Nothing of this runs on a
caller's thread. Entries carry per-model token details only to gateways that announced a
``pricing_version`` (others would refuse the unknown fields).
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from .. import _config
from .._budget import Budget
from .._meter import meter
from .._money import to_decimal
from .._protocol import (
    AGENT_CREATION_RATE_LIMITED, BLOCKS, FORBIDDEN, MAX_BATCH, RECORDED, BlockError, EntryResult, money, parse_agents, parse_error,
    parse_results,
)
from ._answers import ACCEPTED, SPLIT, UNAUTHORIZED, classify, describe, refusal
from ._block_reports import BlockReports, Key
from ._entries import Entry, probe_entry, split
from ._flush_result import FlushResult
from ._gateway_http import Answer, GatewayHTTP, GatewayUnreachable
from ._prices import PriceChannel
from ._quarantine import Quarantine, Refusal
from ._spool import RETRY_DISK_EVERY, Spool, SpoolFileError, default_root, key_prefix, read_state, set_aside

log = logging.getLogger("axme_meter")

#: Undrained spend is written to the spool at most this long after it was priced (SIGKILL bound).
CHECKPOINT_EVERY = 0.5
#: Background request timeout; ``flush`` uses whatever is left of its own timeout.
HTTP_TIMEOUT = 10.0
#: ``POST /v1/mesh/intents`` runs on the caller's thread: keep it short.
INTENT_TIMEOUT = 2.0
#: After a failed intent or grant request, skip the network for this long (don't stall every call).
INTENT_SKIP_AFTER_FAILURE = 5.0
#: ``POST /v1/mesh/grants`` runs on the caller's thread when a call waits for it: keep it short.
GRANT_TIMEOUT = 5.0
#: Before its first grant request, a process delivers what dead processes left (bounded by this).
ADOPTED_FLUSH_TIMEOUT = 2.0
#: An unknown or revoked key (401) is retried this rarely: fixing it takes a person, not a retry loop.
UNAUTHORIZED_RETRY = 300.0

#: ``transport_status()["state"]``: how the last exchange with the gateway went.
OK, UNREACHABLE, UNAUTHORIZED_STATE, FORBIDDEN_STATE = "ok", "unreachable", "unauthorized", "forbidden"


class Sender:
    """Everything that talks to one gateway from this process."""

    def __init__(self, gateway_url: str, api_key: str | None, spool_root: Path | None, *, budget: Budget) -> None:
        self.gateway_url = gateway_url
        self.budget = budget
        self.api_key = api_key
        self.spool_root = spool_root
        self.instance = secrets.token_hex(6)
        self._start_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._event = threading.Event()
        self._open: dict[tuple[str, str | None], Entry] = {}
        self._frozen: dict[str, Entry] = {}
        self._seq = 0
        self._n = 0
        self.dirty = False
        self._first_dirty: float | None = None
        self._changed = False
        self._early = False
        self._stopping = False
        self._ready = False
        #: Spend adopted from dead processes that has not been sent yet (see :meth:`request_grant`).
        self._adopted_unsent = False
        self._thread: threading.Thread | None = None
        self._spool: Spool | None = None
        self._http: GatewayHTTP | None = None
        self._last_send = float("-inf")
        self._last_checkpoint = float("-inf")
        self._retry_at = 0.0
        self._failures = 0
        self._down_since: float | None = None
        self._last_failure = float("-inf")
        self._last_grant_failure = float("-inf")
        self._warned: set[str] = set()
        self._quarantine = Quarantine(None, self.instance, gateway_url, key_prefix(api_key))
        self._reports = BlockReports(self.instance)
        #: False once the gateway refused the ``blocks`` field (an older gateway, AXME Cloud): never sent again.
        self._blocks_supported = True
        #: The gateway's price table: fetched in the background, installed for this process (``_prices.py``).
        self.prices = PriceChannel(self._client, lambda: self._stopping, self._after_price_change)
        #: How the last exchange went: ``ok`` | ``unreachable`` | ``unauthorized`` (see :attr:`state`).
        self._link = OK
        #: Counters for status output, tests and the benchmark.
        self.requests = 0
        #: This process's identical-request counts when the current round was drained (see ``_budget._loops``).
        self._loop_mark: dict[tuple[str, str], int] | None = None
        self.grant_requests = 0
        self.acked = 0
        self.last_error: str | None = None

    @property
    def state(self) -> str:
        """``unauthorized`` or ``unreachable`` while the gateway refuses the key or cannot be reached; else
        ``forbidden`` once the key was refused an agent (that spend is quarantined); else ``ok``."""
        if self._link != OK:
            return self._link
        return FORBIDDEN_STATE if self._quarantine.refused_code(FORBIDDEN) else OK

    # ------------------------------------------------------------------ caller-thread hooks

    def note_record(self) -> None:
        """After a priced call, on the caller's thread: O(1); starts the thread on the first record."""
        if not self.dirty:
            self.dirty = True
            if self._first_dirty is None:
                self._first_dirty = time.monotonic()
            if self._thread is None:
                self.start()
            self._event.set()

    def wake_early(self) -> None:
        """The lease is half used: heartbeat now rather than at the end of the interval."""
        self._early = True
        self._event.set()

    def poke(self) -> None:
        """Settings changed (interval, fail mode): re-plan now."""
        self._event.set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._stopping:
                return
            thread = threading.Thread(target=self._run, name="axme-meter-heartbeat", daemon=True)
            self._thread = thread
            thread.start()
        self.prices.fetch_once()  # in the background: the table is usually in place before the first heartbeat

    def _ensure_ready(self) -> None:
        """Open the spool (a failure leaves it retrying, memory-only meanwhile), adopt dead processes' spools. Once."""
        if self._ready:
            return
        with self._state_lock:
            if self._ready:
                return
            spool = Spool(self.spool_root or default_root(), self.gateway_url, self.api_key, self.instance)
            self._spool = spool
            self._quarantine.directory = spool.dir
            self._ready = True
            if spool.open():
                self._adopt_orphans_locked()

    def _client(self) -> GatewayHTTP:
        """The HTTP client, built on the first request (that is when ``httpx`` gets imported)."""
        http = self._http
        if http is None:
            with self._start_lock:
                if self._http is None:
                    self._http = GatewayHTTP(self.gateway_url, self.api_key, timeout=HTTP_TIMEOUT)
                http = self._http
        return http

    def _adopt_orphans_locked(self) -> int:
        """Take over dead processes' state files of this identity. Each file is checked first: a bad
        one (garbage, truncated, empty, wrong shape) is set aside as ``.corrupt`` and the rest go on."""
        spool = self._spool
        if spool is None or not spool.writable:
            return 0
        orphans = spool.orphans()
        if not orphans:
            return 0
        adopted = 0
        partly_bad: set[Path] = set()
        for state, _lock, _fd in orphans:
            try:
                bodies = read_state(state)
            except SpoolFileError as exc:
                set_aside(state, str(exc))
                continue
            for body in bodies:
                try:
                    entry = Entry.from_spool(body)
                except ValueError as exc:
                    if state not in partly_bad:
                        log.warning("axme_meter: a spooled entry in %s is malformed (%s); adopting the valid ones",
                                    state.name, exc)
                    partly_bad.add(state)
                    continue
                entry.frozen = True  # it may have been sent: only ever re-send it under its id
                if entry.id not in self._frozen:
                    self._frozen[entry.id] = entry
                    adopted += 1
        # Our file must hold the entries before theirs disappear (a crash in between only duplicates ids).
        if spool.save(self._spool_entries_locked()):
            Spool.release_orphans(orphans, keep=partly_bad)
            self._changed = False
        else:
            Spool.release_orphans_locks(orphans)  # keep their files: ours could not be written
            self._changed = True
        if adopted:
            log.info("axme_meter: recovered %d unsent heartbeat entries from earlier processes", adopted)
            self._adopted_unsent = True
            # Deliver them now, not with this process's own first spend: a crash-looping worker that is
            # refused at once never spends, and its predecessors' spend must still reach the gateway.
            if self._first_dirty is None:
                self._first_dirty = time.monotonic()
            self.start()
            self._event.set()
        return adopted

    def close(self, *, timeout: float = 0.0, network: bool = True) -> bool:
        """Stop the thread; try one bounded final send; spool whatever is left. Never hangs."""
        self._stopping = True
        self._event.set()
        delivered = True
        if network:
            # Also the moment a short-lived process delivers what dead processes left in the spool.
            delivered = self.flush(timeout, attempts=1, final=True)
        elif self._ready or self._has_data():
            try:
                self._ensure_ready()
                self.checkpoint()
            except Exception:  # pragma: no cover - defensive: closing must not raise
                log.exception("axme_meter: could not park unsent heartbeats in the spool")
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=0.2)  # it exits at its next wake-up; never wait on a slow request
        if self._spool is not None:
            self._spool.close(remove_lock=True)
        if self._http is not None:
            self._http.close()
        return delivered

    def forget_after_fork(self) -> None:
        """In a fork child: drop the parent's state without touching its files or sockets."""
        self._stopping = True
        if self._spool is not None:
            self._spool.forget_after_fork()
        self._open.clear()
        self._frozen.clear()

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            self._ensure_ready()
        except Exception:
            log.exception("axme_meter: heartbeat sender could not start")
        while not self._stopping:
            timeout = self._plan(time.monotonic())
            if self._event.wait(timeout):
                self._event.clear()
            if self._stopping:
                break
            try:
                self._tick(time.monotonic())
            except Exception:  # the sender must never die; the next tick retries
                log.exception("axme_meter: heartbeat sender error")
                self._schedule_retry(None)

    def _interval(self) -> float:
        return float(_config.settings.heartbeat_interval)

    def _due_at(self) -> float | None:
        """When the next regular send is due, or ``None`` when there is nothing to say."""
        interval = self._interval()
        if self._first_dirty is None and not self._open and not self._frozen:
            if self.budget.armed and self._blocks_supported and self._reports.unreported(self.budget):
                return max(self._last_send + self._early_gap(), self._retry_at)  # tell the gateway about a new block
            if self.budget.armed and self.budget.blocked_by_gateway():
                return self._last_send + interval  # ask about blocked agents once per interval
            return None
        due = self._last_send + interval
        first = self._first_dirty
        if first is not None and first - self._last_send >= interval:
            # The first spend after an idle stretch (or ever): send within a second, not a whole
            # interval later, but let the burst that started it coalesce into the same request.
            due = first + min(1.0, interval)
        return max(due, self._retry_at)

    def _plan(self, now: float) -> float | None:
        """Seconds to sleep: until the next checkpoint, send, retry or fail-closed deadline."""
        wakes: list[float] = []
        if self.dirty:
            wakes.append(self._last_checkpoint + CHECKPOINT_EVERY)
        if self._unsaved():
            wakes.append(self._last_checkpoint + RETRY_DISK_EVERY)
        due = self._due_at()
        if due is not None:
            wakes.append(due)
        if self._early:
            wakes.append(max(self._last_send + self._early_gap(), self._retry_at))
        if self._down_since is not None and _config.settings.fail_mode == "closed":
            wakes.append(self._down_since + float(_config.settings.fail_after))
        if not wakes:
            return None
        return max(0.0, min(wakes) - now)

    def _early_gap(self) -> float:
        return min(1.0, self._interval())

    def _tick(self, now: float) -> None:
        self._check_fail_closed(now)
        if self.budget.granting:
            self._ask_wanted_grants()
        if (self.dirty and now >= self._last_checkpoint + CHECKPOINT_EVERY) or (
                self._unsaved() and now >= self._last_checkpoint + RETRY_DISK_EVERY):
            self.checkpoint()
        due = self._due_at()
        early = self._early and now >= max(self._last_send + self._early_gap(), self._retry_at)
        if (due is not None and now >= due) or early:
            if self._send_lock.acquire(blocking=False):  # a flush() in progress does the work
                try:
                    self._send_all(deadline=None, probes=not early or (due is not None and now >= due))
                finally:
                    self._send_lock.release()

    # ------------------------------------------------------------------ state

    def _new_id(self) -> str:
        self._n += 1
        return f"hb_{self.instance}_{self._seq}_{self._n}"

    def _drain_locked(self) -> list[tuple[str, str, int]]:
        """Fold the meter's pending spend into open entries; returns held grants' use at that same instant."""
        self.dirty = False  # before draining, so a concurrent record marks us dirty again
        pending, uses = self.budget.drain_with_uses(meter)
        for (agent, intent, model), counters in pending.items():
            for part in split(counters):
                entry = self._open.get((agent, intent))
                if entry is not None and not entry.fits(model, part):
                    # The gateway stores at most MAX_ENTRY_USD per entry: close this one, start the next.
                    entry.frozen = True
                    self._frozen[entry.id] = self._open.pop((agent, intent))
                    entry = None
                if entry is None:
                    entry = self._open[(agent, intent)] = Entry(self._new_id(), agent, intent, part.window_start,
                                                                part.window_end)
                entry.add(model, part)
        repeats = self.budget.loops.drain()
        for (agent, intent), counts in repeats.items():
            entry = self._open.get((agent, intent))
            if entry is not None and not entry.fits_repeats(counts):
                entry.frozen = True
                self._frozen[entry.id] = self._open.pop((agent, intent))
                entry = None
            if entry is None:
                now = time.time()
                entry = self._open[(agent, intent)] = Entry(self._new_id(), agent, intent, now, now)
            entry.add_repeats(counts)
        if pending or repeats:
            self._changed = True
        return uses

    def _spool_entries_locked(self) -> list[dict]:
        return [e.to_spool() for e in self._frozen.values()] + [e.to_spool() for e in self._open.values()]

    def _save_locked(self) -> None:
        spool = self._spool
        if self._changed and spool is not None:
            came_back = not spool.writable
            if not spool.save(self._spool_entries_locked()):
                return  # still changed: the next checkpoint tries the disk again
            if came_back:
                self._adopt_orphans_locked()  # the spool was unusable until now
        self._changed = False

    def checkpoint(self) -> None:
        """Drain the meter and write the unsent state to disk (atomic, O(entries))."""
        with self._state_lock:
            self._drain_locked()
            self._save_locked()
        self._last_checkpoint = time.monotonic()

    def _unsaved(self) -> bool:
        """Unsent state that the disk refused to take: try again soon, not only at the next call or send."""
        return self._changed and self._spool is not None and not self._spool.writable

    def _has_data(self) -> bool:
        return bool(self._open or self._frozen or self.dirty)

    def pending_entries(self) -> int:
        return len(self._open) + len(self._frozen)

    def result(self) -> FlushResult:
        """Where this process's spend stands: pending (not acknowledged yet) and refused (quarantined)."""
        with self._state_lock:
            entries = [*self._open.values(), *self._frozen.values()]
            pending_pico = sum(e.totals.cost_pico for e in entries)
        return FlushResult(len(entries), to_decimal(pending_pico), self._quarantine.entries,
                           to_decimal(self._quarantine.cost_pico), self.state)

    # ------------------------------------------------------------------ sending

    def flush(self, timeout: float, *, attempts: int | None = None, final: bool = False) -> bool:
        """Send everything now; True when the gateway has acknowledged all of it."""
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            self._ensure_ready()
        except Exception:
            log.exception("axme_meter: flush could not reach the spool or HTTP client")
            return False
        if not self._send_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            self.checkpoint()
            return False
        try:
            delay = 0.05
            failures = 0
            while True:
                ok = self._send_all(deadline=deadline, probes=False, final=final)
                if ok and not self._open and not self._frozen and not self.dirty:
                    return True
                if ok:
                    # Progress (e.g. spend held back behind an unacknowledged entry): go again at once.
                    if time.monotonic() >= deadline:
                        return False
                    continue
                failures += 1
                # Short backoff of our own, but never sooner than the server's Retry-After.
                wait = max(delay, self._retry_at - time.monotonic()) if self._retry_at else delay
                if (attempts is not None and failures >= attempts) or time.monotonic() + wait >= deadline:
                    return False
                time.sleep(wait)
                delay = min(delay * 2, 1.0)
        finally:
            self._send_lock.release()
            self.checkpoint()

    def _send_all(self, *, deadline: float | None, probes: bool, final: bool = False) -> bool:
        """One round: freeze, POST in ≤1000-entry chunks, apply answers. Caller holds ``_send_lock``.

        The last chunk also reports the grants this process holds (settling and renewing them; ``final``
        returns them). Their use is read in the same instant as the drain, so it is exactly the spend that
        this batch's entries carry (less what open entries hold back)."""
        with self._state_lock:
            self._first_dirty = None  # before the drain: a record after it starts the next window
            uses = self._drain_locked()
            # What the answers to this round will include of this process's identical-request counts.
            self._loop_mark = self.budget.loops.mark() if self.budget.loops.active else None
            self._seq += 1
            frozen_keys = {(e.agent, e.intent) for e in self._frozen.values()}
            for key in [k for k in self._open if k not in frozen_keys]:
                entry = self._open.pop(key)
                entry.frozen = True
                self._frozen[entry.id] = entry
                self._changed = True
            batch = list(self._frozen.values())
            details = self.prices.details_ok
            for entry in batch:
                if entry.details is None:  # fixed at the first send: a sent entry's content never changes
                    entry.details = details
                    self._changed = True
            base = self.budget.snapshot_spent()
            # Spend held back in open entries is not in this batch: the answer's `remaining` won't cover it.
            held_back: dict[str, int] = {}
            for entry in self._open.values():
                base[entry.agent] = base.get(entry.agent, 0) - entry.totals.cost_pico
                held_back[entry.agent] = held_back.get(entry.agent, 0) + entry.totals.cost_pico
            self._save_locked()
        # A grant is returned (``final``) only once none of its spend is held back: returning it earlier would put
        # the held-back money back in the pool before it reached "spent", and another process could be granted it.
        report = [{"id": grant_id, "used_usd": money(max(used - held_back.get(agent, 0), 0)),
                   **({"final": True} if final and agent not in held_back else {})}
                  for agent, grant_id, used in uses]
        self._last_checkpoint = time.monotonic()
        chunks = [batch[i : i + MAX_BATCH] for i in range(0, len(batch), MAX_BATCH)]
        if probes:
            # Blocked, idle agents: ask about them in a request of their own, so that a gateway
            # that dislikes zero-cost entries can never take real spend down with them.
            now = time.time()
            present = {e.agent for e in batch}
            asking = [probe_entry(f"hb_{self.instance}_{self._seq}_p{i}", a, now)
                      for i, a in enumerate(self.budget.blocked_by_gateway()) if a not in present]
            if asking:
                chunks.append(asking[:MAX_BATCH])
        self._early = False
        keys, blocks = self._reports.current(self.budget) if self._blocks_supported else ([], [])
        if not chunks and blocks and self._reports.unreported(self.budget):
            # A block the gateway has not heard of yet, and no spend to carry it: a zero-cost probe does.
            now = time.time()
            chunks.append([probe_entry(f"hb_{self.instance}_{self._seq}_b{i}", a, now)
                           for i, a in enumerate(sorted({b["agent"] for b in blocks}))])
        if not chunks:
            if not (final and report):
                return True
            chunks.append([])  # nothing left to deliver: one request only to return the grants
        self._last_send = time.monotonic()
        last_real = max((i for i, c in enumerate(chunks) if not c or not c[0].probe), default=-1)
        for i, chunk in enumerate(chunks):
            timeout = HTTP_TIMEOUT if deadline is None else deadline - time.monotonic()
            if timeout <= 0:
                return False
            grants = report if i == last_real and report else None
            if not self._post_chunk(chunk, base, timeout, blocks, keys, grants) and (not chunk or not chunk[0].probe):
                return False
        self._failures = 0
        self._retry_at = 0.0
        return True

    def _post(self, chunk: list[Entry], timeout: float, blocks: list[dict[str, Any]],
              grants: list[dict[str, object]] | None = None) -> Answer | None:
        """One POST; ``None`` (noted as unreachable, retry scheduled) when there was no HTTP answer."""
        self.requests += 1
        body: dict[str, Any] = {"heartbeats": [e.to_wire() for e in chunk]}
        if blocks:
            body[BLOCKS] = blocks
        if grants:
            body["grants"] = grants
        try:
            return self._client().post("/v1/mesh/heartbeat", body, timeout=timeout)
        except GatewayUnreachable as exc:
            self._note_failure(str(exc))
            self._schedule_retry(None)
            return None

    def _post_chunk(self, chunk: list[Entry], base: dict[str, int], timeout: float, blocks: list[dict[str, Any]],
                    keys: list[Key], grants: list[dict[str, object]] | None = None) -> bool:
        """Send one chunk and act on the answer; True when nothing of it is left to re-send.

        ``grants`` (the last chunk of a round) settles and renews this process's grants with this spend."""
        sent_at = time.monotonic()
        answer = self._post(chunk, timeout, blocks, grants)
        if answer is None:
            return False
        kind = classify(answer)
        if kind == SPLIT and blocks:
            # Maybe it is the ``blocks`` field this gateway does not know (an older gateway, AXME Cloud).
            retry = self._post(chunk, timeout, [], grants)
            if retry is None:
                return False
            if classify(retry) != SPLIT:
                self._blocks_supported = False
                log.info("axme_meter: gateway %s does not accept client-side block reports; not sending them",
                         self.gateway_url)
                answer, kind, blocks, keys = retry, classify(retry), [], []
            # else the blocks were not the cause: the halves below still carry them
        if kind == ACCEPTED:
            if grants and isinstance(answer.body, dict) and isinstance(answer.body.get("grants"), dict):
                self.budget.grants_renewed(sent_at, {g for g, o in answer.body["grants"].items() if o == "held"})
            return self._accepted(chunk, base, answer, keys)
        if kind == UNAUTHORIZED:
            self._note_unauthorized()
            return False
        if kind == SPLIT:
            self._note_success()
            if not chunk or chunk[0].probe:
                self._reports.delivered(keys)  # answered, if not liked: don't ask again every second
                return True  # a zero-cost question (or a grants-only report) was refused: nothing to keep
            if len(chunk) > 1:
                # The request as a whole was refused: find the entry that causes it by halving.
                # Both halves are always sent: the refused entry never holds back the others.
                half = len(chunk) // 2
                return all([self._post_chunk(chunk[:half], base, timeout, blocks, keys),
                            self._post_chunk(chunk[half:], base, timeout, blocks, keys)])
            self._refuse(chunk, refusal(answer))
            return True
        error = parse_error(answer.body)
        if error is not None and error.is_block:
            # Blocked, but the gateway did not say it recorded the entries: keep them, apply the block.
            self.budget.apply_error(error)
        self._warn_once(f"http{answer.status}", f"axme_meter: gateway answered HTTP {answer.status} to a heartbeat "
                        f"({describe(answer)}); keeping the entries and retrying")
        self._note_failure(f"HTTP {answer.status}")
        self._schedule_retry(answer.retry_after)
        return False

    def _accepted(self, chunk: list[Entry], base: dict[str, int], answer: Answer, keys: list[Key]) -> bool:
        self.prices.on_answer(answer.body)  # another pricing_version: fetch the gateway's table (in the background)
        results = parse_results(answer.body)
        self._acknowledge(chunk, results, answer.status)
        states = parse_agents(answer.body)
        self.budget.apply_answer(states, base, self._loop_mark)
        error = parse_error(answer.body) if answer.status >= 400 else None
        if error is not None and error.is_block and (error.agent or "") not in states:
            # Only when the per-agent map (which is richer: state, every policy) doesn't cover it.
            agents = {e.agent for e in chunk}
            self.budget.apply_error(error, fallback_agent=next(iter(agents)) if len(agents) == 1 else None)
        self._reports.delivered(keys)
        self._note_success()
        return not any(not e.probe and e.id in self._frozen for e in chunk)

    def _acknowledge(self, chunk: list[Entry], results: dict[str, EntryResult] | None,
                     status: int) -> list[tuple[Entry, Refusal]]:
        """Forget delivered entries, quarantine finally refused ones; the rest stay for a re-send."""
        refused: list[tuple[Entry, Refusal]] = []
        with self._state_lock:
            for entry in chunk:
                if entry.probe:
                    continue
                result = EntryResult(RECORDED) if results is None else results.get(entry.id)
                if result is None:
                    continue  # not answered: re-send under the same id
                if result.delivered:
                    self.acked += 1
                elif result.final:
                    refused.append((entry, Refusal(result.code or result.status, result.error or "", status)))
                else:
                    continue  # the gateway could not decide now: re-send under the same id
                self._frozen.pop(entry.id, None)
                self._changed = True
            self._quarantine_locked(refused)
            self._save_locked()
        return refused

    def _refuse(self, chunk: list[Entry], reason: Refusal) -> None:
        """A lone entry the gateway refused as a whole request: quarantined, never re-sent by itself."""
        refused = [(e, reason) for e in chunk if not e.probe]
        with self._state_lock:
            for entry, _ in refused:
                self._frozen.pop(entry.id, None)
            self._changed = True
            self._quarantine_locked(refused)
            self._save_locked()

    def _quarantine_locked(self, refused: list[tuple[Entry, Refusal]]) -> None:
        if refused:
            self._quarantine.add(refused, writable=bool(self._spool is not None and self._spool.writable))

    def _schedule_retry(self, retry_after: float | None) -> None:
        """Exponential backoff with jitter; a server ``Retry-After`` (already capped) wins."""
        self._failures += 1
        interval = self._interval()
        base = min(1.0, interval)
        cap = max(1.0, min(60.0, 4 * interval))
        delay = min(cap, base * 2 ** min(self._failures - 1, 16))
        delay = delay / 2 + random.uniform(0, delay / 2)
        if retry_after is not None:
            delay = max(delay, retry_after)
        self._retry_at = time.monotonic() + delay

    # ------------------------------------------------------------------ reachability and fail mode

    def _note_failure(self, reason: str) -> None:
        now = time.monotonic()
        self.last_error = reason
        self._link = UNREACHABLE
        self._last_failure = now
        if self._down_since is None:
            self._down_since = now
            log.warning("axme_meter: gateway %s unreachable (%s); spooling heartbeats and retrying", self.gateway_url, reason)
        self._check_fail_closed(now)

    def _note_unauthorized(self) -> None:
        """401: the key is unknown or revoked. Said once (URL, key prefix, what to do); retried slowly."""
        now = time.monotonic()
        self.last_error = "HTTP 401 unauthorized"
        self._link = UNAUTHORIZED_STATE
        self._last_failure = now
        if self._down_since is None:
            self._down_since = now  # fail_mode="closed" applies: nothing this process spends is enforced
        self._warn_once("401", f"axme_meter: the gateway {self.gateway_url} refused the API key {key_prefix(self.api_key)} "
                        "(HTTP 401: unknown or revoked). Spend is kept in the spool and retried every "
                        f"{UNAUTHORIZED_RETRY:.0f} s. Set AXME_API_KEY to a valid key of this gateway (an admin makes one "
                        "with `axme-meter keys create --org ORG`); spend booked under the old key can then be moved "
                        "with `axme-meter spool retarget`.", level=logging.ERROR)
        self._check_fail_closed(now)
        self._schedule_retry(UNAUTHORIZED_RETRY)

    def _note_success(self) -> None:
        if self._down_since is not None:
            log.info("axme_meter: gateway %s reachable again", self.gateway_url)
            self._down_since = None
            self.budget.set_unreachable(None)
            with self._state_lock:
                self._adopt_orphans_locked()  # processes that died during the outage
        self.last_error = None
        self._link = OK

    def _check_fail_closed(self, now: float) -> None:
        s = _config.settings
        if self._down_since is not None and s.fail_mode == "closed" and now - self._down_since >= s.fail_after:
            self.budget.set_unreachable(
                f"the AXME gateway has been unreachable for {now - self._down_since:.0f}s and fail_mode is 'closed'; "
                "metered calls are refused until it answers again"
            )

    def _warn_once(self, key: str, message: str, level: int = logging.WARNING) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.log(level, message)

    # ------------------------------------------------------------------ grants

    def request_grant(self, agent: str) -> bool:
        """``POST /v1/mesh/grants`` on the calling thread; the answer goes to the budget.

        Returns False when the gateway could not be asked (unreachable now or moments ago: the
        caller then proceeds as ``fail_mode`` says). A refusal blocks the agent in the budget."""
        try:
            self._ensure_ready()
        except Exception:
            log.exception("axme_meter: grant request could not start the HTTP client")
            return False
        self.prices.fetch_once()
        now = time.monotonic()
        if self._skip_grant_request(now):
            self._check_fail_closed(now)
            return False
        if self._adopted_unsent:
            # Dead processes left spend in the spool: deliver it before asking, so the gateway grants from the
            # true figure. A crash-looping worker (refused at once, dead again) would otherwise pass it on unsent
            # until the dead processes' grants expire, and their spend would look like free budget.
            self._adopted_unsent = False
            self.flush(ADOPTED_FLUSH_TIMEOUT, attempts=1)
        body: dict[str, object] = {"agent": agent, "instance": self.instance, "heartbeat_interval": self._interval(),
                                   **self.budget.grant_request(agent)}
        try:
            answer = self._client().post("/v1/mesh/grants", body, timeout=GRANT_TIMEOUT)
        except GatewayUnreachable as exc:
            self._note_failure(str(exc))
            self._last_grant_failure = time.monotonic()
            return False
        self.grant_requests += 1
        if answer.status == 200 and isinstance(answer.body, dict):
            self._note_success()
            self.budget.apply_grants(agent, answer.body, now)
            return True
        error = parse_error(answer.body)
        details = answer.body.get("error", {}).get("details") if isinstance(answer.body, dict) and error else None
        if answer.status in (404, 405, 501) and not (isinstance(details, dict) and details.get("resource") == "agent"):
            # AXME Cloud (or an older gateway) has no grant endpoint: leases from heartbeat answers, as before.
            self.budget.granting = False
            self._warn_once("nogrants", f"axme_meter: gateway {self.gateway_url} grants no budget (HTTP {answer.status} "
                            "on /v1/mesh/grants); bounding spend with leases from heartbeat answers instead")
            return True
        if answer.status in (403, 429) and error is not None and error.is_block:
            self._note_success()
            until = time.time() + answer.retry_after if answer.retry_after is not None and error.is_block else None
            self.budget.apply_error(error, fallback_agent=agent, until=until)
            return True
        if answer.status >= 500:
            self._note_failure(f"HTTP {answer.status}")
            self._last_grant_failure = time.monotonic()
            return False
        if answer.status == 401:
            self._note_unauthorized()  # said once, with what to do; asked again only after a pause
            self._last_grant_failure = time.monotonic()
            return False
        if answer.status in (403, 404):
            # This key may not spend for this agent at all: its spend will be refused (and quarantined) too.
            # Don't ask again on every call; the heartbeat path reports the refusal once, with what to do.
            self.budget.apply_grants(agent, {"unlimited": True, "grants": []}, now)
        self._warn_once(f"grant{answer.status}", f"axme_meter: grant request for {agent} answered HTTP {answer.status} "
                        f"({describe(answer)}); continuing without a grant")
        return False

    def _skip_grant_request(self, now: float) -> bool:
        """While the gateway is down, don't make every call that needs a grant wait for a timeout first. But one
        heartbeat that failed on a busy gateway is not an outage: skipping then would send calls out ungranted."""
        if self._down_since is None:
            return False
        recently = INTENT_SKIP_AFTER_FAILURE
        if now - self._last_grant_failure < recently:
            return True
        return now - self._down_since >= recently and now - self._last_failure < recently

    def _ask_wanted_grants(self) -> None:
        """Background top-ups: slices that ran below half of their last top-up ask for more now."""
        for agent in self.budget.wants_grant():
            event, leader = self.budget.begin_ask(agent)
            if not leader:
                continue
            try:
                self.request_grant(agent)
            finally:
                self.budget.end_ask(agent, event)

    # ------------------------------------------------------------------ intents

    def register_intent(self, agent: str, intent_id: str, labels: dict[str, str]) -> None:
        """``POST /v1/mesh/intents`` on the caller's thread; raise ``BudgetExceeded`` when refused."""
        self.budget.check(agent, intent_id)
        try:
            self._ensure_ready()
        except Exception:
            log.exception("axme_meter: intent registration could not start the HTTP client")
            return
        self.prices.fetch_once()
        now = time.monotonic()
        if self._down_since is not None and now - self._last_failure < INTENT_SKIP_AFTER_FAILURE:
            self._check_fail_closed(now)
            self.budget.check(agent, intent_id)
            return
        try:
            answer = self._client().post("/v1/mesh/intents", {"agent": agent, "intent_id": intent_id, "labels": labels},
                                     timeout=INTENT_TIMEOUT)
        except GatewayUnreachable as exc:
            self._note_failure(str(exc))
            self.budget.check(agent, intent_id)  # raises only when failing closed
            return
        if answer.status in (429, 403):
            error = parse_error(answer.body)
            if answer.status == 429 and error is None:
                error = BlockError("budget_exceeded", "")
            not_a_block = ("rate_limited", "rate_limit_exceeded", AGENT_CREATION_RATE_LIMITED)
            if error is not None and (answer.status == 429 and error.code not in not_a_block or error.is_block):
                self._note_success()
                block = self.budget.apply_error(error, fallback_agent=agent)
                if block is not None:
                    raise block.error(error.agent or agent, intent_id)
        if answer.status >= 500:
            self._note_failure(f"HTTP {answer.status}")
            self.budget.check(agent, intent_id)
            return
        if answer.status == 401:
            self._note_unauthorized()
            self.budget.check(agent, intent_id)  # raises only when failing closed
        elif not 200 <= answer.status < 300:
            self._warn_once(f"intent{answer.status}", f"axme_meter: intent registration answered HTTP {answer.status} "
                            f"({describe(answer)}); continuing without it")
        else:
            self._note_success()

    # ------------------------------------------------------------------ prices

    def _after_price_change(self) -> None:
        """A new price table is in place: spend priced with the old one goes out in entries of its own.

        The gateway re-prices a model's calls only when all of them in an entry were unpriced, so
        calls priced before and after the change must not share an entry (see ``gateway/_reprice.py``)."""
        with self._state_lock:
            self._drain_locked()
            for key in list(self._open):
                entry = self._open.pop(key)
                entry.frozen = True
                self._frozen[entry.id] = entry
                self._changed = True
            self._save_locked()

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, object]:
        now = time.monotonic()
        result = self.result()
        return {
            "state": self.state,
            "gateway_url": self.gateway_url,
            "api_key_set": bool(self.api_key),
            "api_key_prefix": key_prefix(self.api_key) if self.api_key else None,
            "instance": self.instance,
            "thread_alive": self._thread is not None and self._thread.is_alive(),
            "pending_entries": result.pending_entries,
            "pending_usd": str(result.pending_usd),
            "requests": self.requests,
            "grant_requests": self.grant_requests,
            "acked": self.acked,
            "quarantined": self._quarantine.status(),
            "forbidden_agents": self._quarantine.refused_code(FORBIDDEN),
            "spool_dir": str(self._spool.dir) if self._spool is not None else None,
            "spool_writable": bool(self._spool and self._spool.writable),
            "unreachable_for": None if self._down_since is None else round(now - self._down_since, 3),
            "retry_in": round(max(0.0, self._retry_at - now), 3) if self._retry_at > now else 0.0,
            "last_error": self.last_error,
            "pricing_version": self.prices.version,
        }


__all__ = ["Sender"]
