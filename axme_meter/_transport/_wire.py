"""The heartbeat protocol on the wire: entries out, agent states and block errors in.

Kept free of I/O so the sender, the spool and the tests share one definition of
every field name (see ``shared/README.md``). Money stays in int pico-dollars
inside the process; it becomes a decimal string only in :meth:`Entry.to_wire`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .._meter import Bucket, Totals
from .._money import from_usd, to_wire

#: The gateway accepts at most this many entries per request.
MAX_BATCH = 1000

_METRIC_INTS = ("llm_calls", "tokens_in", "tokens_out", "cached_tokens", "reasoning_tokens", "estimated_calls", "unpriced_calls")
_TOTALS_ATTR = {
    "llm_calls": "calls",
    "tokens_in": "tokens_in",
    "tokens_out": "tokens_out",
    "cached_tokens": "cached_tokens",
    "reasoning_tokens": "reasoning_tokens",
    "estimated_calls": "estimated_calls",
    "unpriced_calls": "unpriced_calls",
}
_BY_MODEL_INTS = ("llm_calls", "tokens_in", "tokens_out")


def iso(ts: float) -> str:
    """Epoch seconds to the protocol's ``2026-11-28T23:00:00Z`` form (whole seconds, UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def parse_iso(value: object) -> float | None:
    """ISO-8601 (``Z`` or offset; naive means UTC) to epoch seconds; ``None`` for anything unusable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def parse_money(value: object) -> int | None:
    """A gateway amount (decimal string or JSON number) to pico-dollars; ``None`` if absent or bad."""
    if value is None:
        return None
    try:
        return from_usd(value)
    except ValueError:
        return None


@dataclass(slots=True)
class Entry:
    """One heartbeat entry: the pending spend of one agent × intent, with a fixed idempotency id.

    While an entry has never been sent it is *open* and later buckets of the same
    agent × intent merge into it (that keeps memory O(agents × intents × models)
    during an outage). Once a request carrying it has left the process it is
    *frozen*: the gateway may have recorded it, so its content must never change
    again, only be re-sent under the same id.
    """

    id: str
    agent: str
    intent: str | None
    window_start: float
    window_end: float
    totals: Totals = field(default_factory=Totals)
    by_model: dict[str, Totals] = field(default_factory=dict)
    pricing_version: str = ""
    frozen: bool = False
    #: Zero-cost entries that only ask the gateway for a blocked agent's state; never spooled.
    probe: bool = False

    @classmethod
    def from_bucket(cls, entry_id: str, bucket: Bucket) -> Entry:
        entry = cls(entry_id, bucket.agent, bucket.intent, bucket.window_start, bucket.window_end)
        entry.merge(bucket)
        return entry

    def merge(self, bucket: Bucket) -> None:
        """Fold a drained meter bucket into this (open) entry."""
        self.totals.merge(bucket.totals)
        for model, totals in bucket.by_model.items():
            mine = self.by_model.get(model)
            if mine is None:
                mine = self.by_model[model] = Totals()
            mine.merge(totals)
        self.window_start = min(self.window_start, bucket.window_start)
        self.window_end = max(self.window_end, bucket.window_end)
        if bucket.pricing_version:
            self.pricing_version = bucket.pricing_version

    def to_wire(self) -> dict[str, Any]:
        start = math.floor(self.window_start)
        end = max(math.ceil(self.window_end), start)
        body: dict[str, Any] = {"id": self.id, "agent": self.agent}
        if self.intent is not None:
            body["intent_id"] = self.intent
        body["status"] = "processing"
        body["window_start"] = iso(start)
        body["window_end"] = iso(end)
        body["metrics"] = _metrics(self.totals, _METRIC_INTS)
        body["by_model"] = {model: _metrics(t, _BY_MODEL_INTS) for model, t in self.by_model.items()}
        if self.pricing_version:
            body["pricing_version"] = self.pricing_version
        return body

    def to_spool(self) -> dict[str, Any]:
        """The wire form plus exact float windows, so a reloaded open entry can keep merging."""
        body = self.to_wire()
        body["_window"] = [self.window_start, self.window_end]
        body["_frozen"] = self.frozen
        return body

    @classmethod
    def from_spool(cls, body: dict[str, Any]) -> Entry:
        """Inverse of :meth:`to_spool` (also accepts a plain wire entry). Raises ``ValueError`` if malformed."""
        try:
            window = body.get("_window") or [parse_iso(body["window_start"]), parse_iso(body["window_end"])]
            entry = cls(str(body["id"]), str(body["agent"]), body.get("intent_id"), float(window[0]), float(window[1]))
            entry.totals = _totals(body["metrics"])
            entry.by_model = {str(m): _totals(t) for m, t in (body.get("by_model") or {}).items()}
            entry.pricing_version = str(body.get("pricing_version") or "")
            entry.frozen = bool(body.get("_frozen", True))
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"malformed spooled heartbeat entry: {exc!r}") from None
        return entry


def probe_entry(entry_id: str, agent: str, now: float) -> Entry:
    """A zero-cost entry for an agent that is blocked and idle, so the answer tells us when it is unblocked."""
    return Entry(entry_id, agent, None, now, now, probe=True, frozen=True)


def _metrics(totals: Totals, names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"cost_usd": to_wire(totals.cost_pico)}
    for name in names:
        out[name] = getattr(totals, _TOTALS_ATTR[name])
    return out


def _totals(metrics: dict[str, Any]) -> Totals:
    totals = Totals()
    cost = parse_money(metrics.get("cost_usd", 0))
    if cost is None:
        raise ValueError(f"bad cost_usd {metrics.get('cost_usd')!r}")
    totals.cost_pico = cost
    for name, attr in _TOTALS_ATTR.items():
        setattr(totals, attr, int(metrics.get(name, 0) or 0))
    return totals


# ---------------------------------------------------------------------------------------------
# Answers


@dataclass(slots=True)
class PolicyState:
    """One policy of one agent as the gateway reported it. Amounts in pico-dollars."""

    name: str
    limit: int | None = None
    spent: int | None = None
    remaining: int | None = None
    resets_at: float | None = None
    #: Set only for per-intent policies the gateway scopes to one intent.
    intent_id: str | None = None
    #: Our gateway's per-process share of ``remaining`` (remaining / live client instances); AXME Cloud omits it.
    lease: int | None = None


@dataclass(slots=True)
class AgentState:
    state: str
    policies: list[PolicyState] = field(default_factory=list)


@dataclass(slots=True)
class BlockError:
    """The ``budget_exceeded`` (or AXME ``quota_exceeded``) error body of a 429/403."""

    code: str
    message: str
    agent: str | None = None
    policy: str | None = None
    limit: int | None = None
    spent: int | None = None
    resets_at: float | None = None
    intent_id: str | None = None


def parse_agents(body: object) -> dict[str, AgentState]:
    """The ``agents`` map of a heartbeat answer. Tolerant: bad parts are skipped, never raised."""
    out: dict[str, AgentState] = {}
    agents = body.get("agents") if isinstance(body, dict) else None
    if not isinstance(agents, dict):
        return out
    for address, info in agents.items():
        if not isinstance(info, dict):
            continue
        policies: list[PolicyState] = []
        for raw in info.get("policies") or []:
            if not isinstance(raw, dict):
                continue
            policies.append(
                PolicyState(
                    name=str(raw.get("name") or "policy"),
                    limit=parse_money(raw.get("limit")),
                    spent=parse_money(raw.get("spent")),
                    remaining=parse_money(raw.get("remaining")),
                    resets_at=parse_iso(raw.get("resets_at")),
                    intent_id=raw.get("intent_id") if isinstance(raw.get("intent_id"), str) else None,
                    lease=parse_money(raw.get("lease")),
                )
            )
        out[str(address)] = AgentState(state=str(info.get("state") or "active"), policies=policies)
    return out


def parse_results(body: object) -> dict[str, tuple[str, object]] | None:
    """``{id: (status, error)}`` from the answer's ``results``; ``None`` when the answer has none."""
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list):
        return None
    out: dict[str, tuple[str, object]] = {}
    for item in results:
        if isinstance(item, dict) and "id" in item:
            out[str(item["id"])] = (str(item.get("status") or ""), item.get("error"))
    return out


def parse_error(body: object) -> BlockError | None:
    """A block error from a 429/403 body, reading our fields and AXME's ``details`` alike."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None
    details = err.get("details") if isinstance(err.get("details"), dict) else {}
    return BlockError(
        code=str(err.get("code") or ""),
        message=str(err.get("message") or ""),
        agent=err.get("agent") if isinstance(err.get("agent"), str) else None,
        policy=err.get("policy") or details.get("dimension"),
        limit=parse_money(err.get("limit", details.get("limit"))),
        spent=parse_money(err.get("spent", details.get("used"))),
        resets_at=parse_iso(err.get("resets_at") or details.get("reset_at")),
        intent_id=err.get("intent_id") if isinstance(err.get("intent_id"), str) else None,
    )
