"""The AXME mesh wire protocol, as both sides speak it: the client's sender and the gateway import this.

One place for what must never drift between them: batch and sanity limits, entry
result words, block error codes, the protocol's ISO-8601 instants, money as
decimal strings, the error envelope, and tolerant parsers for gateway answers.
The full description, with examples, is in ``docs/protocol.md``.

No I/O and no heavy imports: the client loads it on its first heartbeat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from ._money import from_usd, to_decimal

#: At most this many entries in one ``POST /v1/mesh/heartbeat``.
MAX_BATCH = 1000
#: Sanity limit on what one LLM call may cost. It applies per call (an entry's cost divided by its
#: ``llm_calls``; an entry with no calls may carry at most this much), never to an aggregated entry:
#: spend piled up over a long outage is still real.
MAX_CALL_USD = Decimal(10_000)
#: Storage bound on one entry (the gateway keeps pico-dollars in 64-bit integers). Not a limit on
#: spend: the client starts a new entry before an open one would cross it, so spend of any size
#: travels in as many entries as it needs.
MAX_ENTRY_USD = Decimal(1_000_000)
#: Upper bound of every count in one entry (calls, tokens); the client rolls over before it, too.
MAX_COUNT = 10**12
#: Intent ids: 1-200 characters, no ``/`` and no control characters, and not ``.`` or ``..`` (clients drop
#: those from paths), so every stored id is reachable as ``GET /v1/mesh/intents/{percent-encoded id}``.
INTENT_ID_PATTERN = r"^[^/\x00-\x1f\x7f]+$"
MAX_ID_LENGTH = 200

# Per-entry outcomes in a heartbeat answer's ``results``.
RECORDED, DUPLICATE, CONFLICT, ERROR = "recorded", "duplicate", "conflict", "error"
#: Outcomes after which the client forgets the entry: the gateway has it.
DELIVERED = frozenset({RECORDED, DUPLICATE})
#: Per-entry error codes (``results[].error.code``): the entry is invalid, or the key may not write its agent.
INVALID, FORBIDDEN = "validation_error", "forbidden"
#: Entry error codes that mean "try again later" (the gateway could not decide); every other error,
#: and every ``conflict``, is final: the client quarantines the entry with its reason.
#: An entry for a new agent its org may not create yet (``AXME_GATEWAY_NEW_AGENTS_PER_MINUTE``): re-sent later.
AGENT_CREATION_RATE_LIMITED = "agent_creation_rate_limited"
RETRYABLE_ENTRY_CODES = frozenset({"unavailable", "internal_error", "timeout", AGENT_CREATION_RATE_LIMITED})

#: Batch-level field in which a client reports the agents it stopped on its own since it last reported.
BLOCKS = "blocks"
#: Why a client stopped an agent: its lease ran out, a ``local_limits`` cap, or fail-closed while unreachable.
CLIENT_BLOCK_SOURCES = ("lease", "local", "fail_closed")
#: At most this many block reports in one batch.
MAX_BLOCKS = 1000

#: Error codes (ours and AXME's) that mean "this agent may not spend".
BLOCK_CODES = frozenset(
    {"budget_exceeded", "quota_exceeded", "agent_blocked", "agent_paused", "agent_killed", "blocked", "paused", "killed"}
)
#: Agent states in answers; anything but ``active`` stops spending.
STATES = ("active", "blocked", "paused", "killed")


def intent_id_problem(value: object) -> str | None:
    """Why ``value`` is not a valid intent id (checked alike by ``axme_meter.intent`` and the gateway), or None."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
        return f"must be a string of 1 to {MAX_ID_LENGTH} characters"
    if value in (".", ".."):
        return "must not be '.' or '..' (so GET /v1/mesh/intents/{id} can reach it)"
    if any(c == "/" or ord(c) < 32 or ord(c) == 127 for c in value):
        return "must not contain '/' or control characters (so GET /v1/mesh/intents/{id} can reach it)"
    return None


# --------------------------------------------------------------------------------------------- time


def iso(ts: float | datetime | None) -> str | None:
    """Epoch seconds or an aware datetime to the protocol's ``2026-11-28T23:00:00Z`` (whole seconds, UTC)."""
    if ts is None:
        return None
    if isinstance(ts, datetime):
        ts = ts.timestamp()
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


# --------------------------------------------------------------------------------------------- money


def money(pico: int) -> str:
    """Money on the wire: a decimal string with at least two places (``"50.00"``, ``"0.0312"``), never exponents."""
    amount = to_decimal(pico)
    if amount.as_tuple().exponent > -2:  # type: ignore[operator]
        amount = amount.quantize(Decimal("0.01"))
    return format(amount, "f")


def parse_money(value: object) -> int | None:
    """An amount from an answer (decimal string or JSON number) to pico-dollars; ``None`` if absent or bad."""
    if value is None:
        return None
    try:
        return from_usd(value)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------- errors


def error_body(code: str, message: str, details: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The one error envelope: ``{"error": {"code", "message", …extra, "details"}}``."""
    return {"error": {"code": code, "message": message, **extra, "details": details or {}}}


@dataclass(slots=True)
class BlockError:
    """The ``budget_exceeded`` (or AXME ``quota_exceeded``) error of a 429/403. Amounts in pico-dollars."""

    code: str
    message: str
    agent: str | None = None
    policy: str | None = None
    limit: int | None = None
    spent: int | None = None
    resets_at: float | None = None
    intent_id: str | None = None

    @property
    def is_block(self) -> bool:
        return self.code in BLOCK_CODES or self.policy is not None


def parse_error(body: object) -> BlockError | None:
    """The error of an answer, reading our fields and AXME's ``details`` alike; ``None`` if there is none."""
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


# --------------------------------------------------------------------------------------------- answers


@dataclass(slots=True)
class PolicyState:
    """One policy of one agent as the gateway reported it. Money in pico-dollars (counts as plain ints)."""

    name: str
    limit: int | None = None
    spent: int | None = None
    remaining: int | None = None
    resets_at: float | None = None
    #: Set only for per-intent policies the gateway scopes to one intent.
    intent_id: str | None = None
    #: Our gateway's per-process share of ``remaining``; AXME Cloud omits it.
    lease: int | None = None

    @property
    def is_money(self) -> bool:
        return self.name.endswith("_usd")


@dataclass(slots=True)
class AgentState:
    state: str
    policies: list[PolicyState] = field(default_factory=list)


@dataclass(slots=True)
class EntryResult:
    """The gateway's verdict on one heartbeat entry: ``status`` and, for errors, ``code`` / ``field``."""

    status: str
    #: The error message (or ``None``).
    error: str | None = None
    code: str | None = None
    field: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status in DELIVERED

    @property
    def final(self) -> bool:
        """Refused for good: re-sending the same entry can never succeed (quarantine it)."""
        if self.status == CONFLICT:
            return True
        return self.status == ERROR and self.code not in RETRYABLE_ENTRY_CODES

    def reason(self) -> str:
        """One line for logs and the quarantine file: ``forbidden: this key may not write …``."""
        head = self.code or self.status
        return f"{head}: {self.error}" if self.error and self.error != head else head


def entry_result(entry_id: str | None, status: str, code: str | None = None, message: str | None = None,
                 field: str | None = None) -> dict[str, Any]:
    """One item of a heartbeat answer's ``results``; ``error`` is ``null`` unless the entry was refused."""
    error = None if code is None else {"code": code, "message": message or code, "field": field}
    return {"id": entry_id, "status": status, "error": error}


def parse_agents(body: object) -> dict[str, AgentState]:
    """The ``agents`` map of a heartbeat or grant answer. Tolerant: bad parts are skipped, never raised."""
    out: dict[str, AgentState] = {}
    agents = body.get("agents") if isinstance(body, dict) else None
    if not isinstance(agents, dict):
        return out
    for address, info in agents.items():
        if not isinstance(info, dict):
            continue
        policies = [parse_policy(raw) for raw in info.get("policies") or [] if isinstance(raw, dict)]
        out[str(address)] = AgentState(state=str(info.get("state") or "active"), policies=policies)
    return out


def parse_policy(raw: dict[str, Any]) -> PolicyState:
    intent_id = raw.get("intent_id")
    return PolicyState(
        name=str(raw.get("name") or "policy"),
        limit=parse_money(raw.get("limit")),
        spent=parse_money(raw.get("spent")),
        remaining=parse_money(raw.get("remaining")),
        resets_at=parse_iso(raw.get("resets_at")),
        intent_id=intent_id if isinstance(intent_id, str) else None,
        lease=parse_money(raw.get("lease")),
    )


def parse_results(body: object) -> dict[str, EntryResult] | None:
    """``{id: EntryResult}`` from an answer's ``results``; ``None`` when the answer has none."""
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list):
        return None
    out: dict[str, EntryResult] = {}
    for item in results:
        if isinstance(item, dict) and "id" in item:
            error = item.get("error")
            code = field_name = None
            if isinstance(error, dict):
                code = str(error["code"]) if error.get("code") else None
                field_name = str(error["field"]) if error.get("field") else None
                error = error.get("message") or error.get("code") or error
            out[str(item["id"])] = EntryResult(str(item.get("status") or ""), str(error) if error else None, code, field_name)
    return out


# --------------------------------------------------------------------------------------------- client blocks


def client_block(agent: str, source: str, policy: str | None, limit: int | None, spent: int | None,
                 resets_at: float | None, at: float) -> dict[str, Any]:
    """One item of a batch's ``blocks``: this process stopped ``agent`` on its own (money in pico-dollars here)."""
    return {"agent": agent, "source": source, "policy": policy,
            "limit": money(limit) if limit is not None else None, "spent": money(spent) if spent is not None else None,
            "resets_at": iso(resets_at), "at": iso(at)}


__all__ = [
    "AGENT_CREATION_RATE_LIMITED", "BLOCKS", "BLOCK_CODES", "CLIENT_BLOCK_SOURCES", "CONFLICT", "DELIVERED", "DUPLICATE", "ERROR", "FORBIDDEN",
    "INTENT_ID_PATTERN", "INVALID", "MAX_BATCH", "MAX_BLOCKS", "MAX_CALL_USD", "MAX_COUNT", "MAX_ENTRY_USD", "RECORDED",
    "RETRYABLE_ENTRY_CODES", "AgentState", "BlockError", "EntryResult", "PolicyState", "client_block", "entry_result",
    "error_body", "intent_id_problem", "iso", "money", "parse_agents", "parse_error", "parse_iso", "parse_money",
    "parse_policy", "parse_results",
]
