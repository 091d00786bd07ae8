"""Loop detection in the client: fingerprint identical requests and stop the one that passes the limit.

Off until the gateway says an agent has ``max_identical_requests_per_hour`` (the
``loop`` object of a heartbeat or grant answer, with the org's fingerprint key).
Until then :attr:`LoopGuard.active` is False and a metered call reads only that.

For an agent with a loop policy, each request to chat completions, responses,
completions or embeddings gets a fingerprint: BLAKE2b (8-byte digest) keyed with the
org's secret over the model and the canonical JSON of the content-bearing
parameters (not streaming flags or metadata). Content is never kept, only counts.

A request may go when this fingerprint's count for the agent within the last hour
stays within the limit, counting the request itself: the larger of this process's
own sliding-hour count and the fleet's count (the gateway's last report, which
includes what this process had sent then, plus what this process did since).
Otherwise ``action_on_breach`` decides: ``notify`` lets it through (the gateway
alerts), anything else raises ``BudgetExceeded`` before the request is sent. Either
way the attempt is counted and reported, so the gateway sees the limit passed and
applies the action fleet-wide (block for the hour, pause, alert).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import defaultdict, deque
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .._errors import BudgetExceeded

if TYPE_CHECKING:
    from .._protocol import LoopState

POLICY = "max_identical_requests_per_hour"
WINDOW_SECONDS = 3600.0
#: Parameters that carry a request's content, per endpoint kind; everything else (``stream``,
#: ``stream_options``, ``metadata``, ``user``, ``store``, sampling knobs) does not make a request different.
CONTENT_PARAMS: dict[str, tuple[str, ...]] = {
    "chat": ("messages", "tools", "tool_choice", "functions", "function_call", "response_format"),
    "responses": ("input", "instructions", "tools", "tool_choice", "text", "prompt", "previous_response_id"),
    "completions": ("prompt", "suffix"),
    "embeddings": ("input", "dimensions", "encoding_format"),
}
#: Sweep expired local counts after this many fingerprinted calls (bounds memory to about an hour of calls).
_SWEEP_EVERY = 4096


def fingerprint(key: bytes, kind: str, body: dict[str, Any]) -> str | None:
    """The request's keyed fingerprint (16 hex digits), or ``None`` for kinds that are not fingerprinted."""
    params = CONTENT_PARAMS.get(kind)
    if params is None:
        return None
    content = {name: body[name] for name in params if name in body}
    content["model"] = body.get("model")
    content["kind"] = kind
    data = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.blake2b(data.encode("utf-8", "surrogatepass"), digest_size=8, key=key).hexdigest()


class _Policy:
    __slots__ = ("limit", "action", "key", "resets_at", "fleet")

    def __init__(self, state: LoopState) -> None:
        self.limit = state.limit
        self.action = state.action
        self.key = state.key
        self.resets_at = state.resets_at
        self.fleet: dict[str, int] = dict(state.counts)


class LoopGuard:
    """Per-process loop state: policies from answers, local sliding counts, counts not yet reported."""

    __slots__ = ("active", "_lock", "_policies", "_local", "_since", "_pending", "_calls")

    def __init__(self) -> None:
        #: True while any agent has a loop policy: the only thing a metered call reads otherwise.
        self.active = False
        self._lock = threading.Lock()
        self._policies: dict[str, _Policy] = {}
        #: (agent, fingerprint) -> times of this process's attempts within the last hour.
        self._local: dict[tuple[str, str], deque[float]] = {}
        #: (agent, fingerprint) -> attempts since the gateway's last report of the fleet's counts.
        self._since: dict[tuple[str, str], int] = defaultdict(int)
        #: (agent, intent) -> fingerprint -> attempts not yet taken into a heartbeat entry.
        self._pending: dict[tuple[str, str | None], dict[str, int]] = {}
        self._calls = 0

    # ------------------------------------------------------------------ the call path

    def admit(self, agent: str, intent: str | None, kind: str, body: dict[str, Any]) -> bool:
        """Count this request; raise ``BudgetExceeded`` when it passes the limit and the action stops it.

        Returns True when the sender should report soon (the limit was passed)."""
        policy = self._policies.get(agent)
        if policy is None:
            return False
        try:
            fp = fingerprint(policy.key, kind, body)
        except Exception:  # an odd body must never break the call: it is just not fingerprinted
            return False
        if fp is None:
            return False
        now = time.time()
        with self._lock:
            times = self._local.get((agent, fp))
            if times is None:
                times = self._local[(agent, fp)] = deque()
            while times and times[0] <= now - WINDOW_SECONDS:
                times.popleft()
            since = self._since[(agent, fp)]
            fleet = policy.fleet.get(fp, 0) if policy.resets_at is None or now < policy.resets_at else 0
            count = max(len(times), fleet + since) + 1  # with this request
            times.append(now)
            self._since[(agent, fp)] = since + 1
            slot = self._pending.setdefault((agent, intent), {})
            slot[fp] = slot.get(fp, 0) + 1
            self._calls += 1
            if self._calls % _SWEEP_EVERY == 0:
                self._sweep(now)
        if count <= policy.limit:
            return False
        if policy.action == "notify":
            return True
        where = f" in intent {intent}" if intent else ""
        raise BudgetExceeded(
            f"{agent} sent the same request {count} times within an hour{where}, over {POLICY} ({policy.limit}); "
            f"the request was not sent (a runaway loop?). Resets when the hour's count falls back under the limit.",
            agent=agent, intent=intent, policy=POLICY, limit=Decimal(policy.limit), spent=Decimal(count),
            resets_at=datetime.fromtimestamp(policy.resets_at, timezone.utc) if policy.resets_at else None,
            state="paused" if policy.action in ("pause", "require_approval") else "killed" if policy.action == "kill" else "blocked")

    # ------------------------------------------------------------------ the sender

    def drain(self) -> dict[tuple[str, str | None], dict[str, int]]:
        """Counts not yet reported, per agent × intent: they go into heartbeat entries."""
        if not self._pending:
            return {}
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    def mark(self) -> dict[tuple[str, str], int]:
        """At a batch's drain: the attempts the gateway's answer to that batch will include."""
        with self._lock:
            return dict(self._since)

    def apply(self, agent: str, state: LoopState | None, mark: dict[tuple[str, str], int] | None) -> None:
        """An answer for ``agent``: its loop policy (or none) and the fleet's counts, which now cover ``mark``."""
        with self._lock:
            if state is None:
                if self._policies.pop(agent, None) is not None:
                    for key in [k for k in self._since if k[0] == agent]:
                        del self._since[key]
                    for key in [k for k in self._local if k[0] == agent]:
                        del self._local[key]
                self.active = bool(self._policies)
                return
            old = self._policies.get(agent)
            policy = _Policy(state)
            if old is not None and old.resets_at == policy.resets_at:
                old.fleet.update(policy.fleet)  # an answer lists the batch's and the hottest counts, not all
                policy.fleet = old.fleet
            self._policies[agent] = policy
            if mark is not None:
                for key in [k for k in mark if k[0] == agent]:
                    n = mark.pop(key)  # once: a batch in several chunks answers for an agent more than once
                    left = self._since.get(key, 0) - n
                    if left > 0:
                        self._since[key] = left
                    else:
                        self._since.pop(key, None)
            self.active = True

    def _sweep(self, now: float) -> None:
        for key in [k for k, times in self._local.items() if not times or times[-1] <= now - WINDOW_SECONDS]:
            del self._local[key]

    def status(self) -> dict[str, object]:
        with self._lock:
            return {agent: {"limit": p.limit, "action": p.action} for agent, p in self._policies.items()}

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._pending = {}
