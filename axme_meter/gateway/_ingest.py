"""Heartbeat ingest and intent registration: the two write paths clients hit every interval.

One database transaction per request: entry ids are recorded (a replay with the
same content becomes "duplicate" and changes nothing; with other content or for
another agent it is a "conflict" and changes nothing either), counters are upserted
for every window, the agents' policies are evaluated on the fresh totals, ``pause``
transitions, alert claims and client-reported blocks are written. Alerts are handed
to the dispatcher only after commit. PostgreSQL deadlock / serialization failures
retry the whole transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from .._protocol import AGENT_CREATION_RATE_LIMITED, CONFLICT, DUPLICATE, ERROR, LOOP_POLICY, RECORDED, entry_result, money
from . import _agent_quota, _approvals, _client_blocks, _grants, _loops, _reprice, _spend_rate, _store
from ._alerts import Alert
from ._auth import Principal
from ._db import write_conn
from ._errors import ApiError
from ._policies import AgentStatus, PolicyStatus, intent_refusal
from ._queries import load_status, load_statuses, parse_policy
from ._schemas import ClientBlock, CostPolicy, GrantUse, HeartbeatEntry, IntentCreate
from ._windows import iso, window_starts

T = TypeVar("T")
#: SQLite has one writer at a time anyway; queueing threads on a lock beats its sleep-and-poll busy handler.
_SQLITE_WRITER = threading.Lock()
_RETRYABLE = ("40P01", "40001")  # deadlock_detected, serialization_failure


@dataclass(slots=True)
class IngestResult:
    results: list[dict[str, Any]]
    statuses: dict[str, AgentStatus]
    alerts: list[Alert] = field(default_factory=list)
    #: Outcome of each grant the batch reported on (``_grants.apply_uses``).
    grants: dict[str, str] = field(default_factory=dict)
    #: Agents of this batch's entries that were not created (``_agent_quota``), by address.
    refused: dict[str, _agent_quota.Refused] = field(default_factory=dict)


def in_transaction(engine: Engine, work: Callable[[Connection], T], attempts: int = 6) -> T:
    """Run ``work`` in one write transaction, retrying on PostgreSQL deadlocks/serialization failures."""
    serial = _SQLITE_WRITER if engine.dialect.name == "sqlite" else contextlib.nullcontext()
    for attempt in range(attempts):
        try:
            with serial, write_conn(engine) as conn:
                conn.info.pop("axme_claims", None)  # forget claims of an earlier rolled-back attempt
                with conn.begin():
                    result = work(conn)
                _store.remember_claims(conn)
                return result
        except DBAPIError as exc:
            code = getattr(getattr(exc, "orig", None), "sqlstate", None)
            if code not in _RETRYABLE or attempt == attempts - 1:
                raise
            time.sleep(0.01 * (attempt + 1) + secrets.randbelow(20) / 1000)
    raise AssertionError("unreachable")


def resolve_agents(principal: Principal, entries: Sequence[HeartbeatEntry], prefix: str) -> list[str]:
    """The agent of every entry (the key's bound agent when absent), refusing foreign agents."""
    addresses: list[str] = []
    for i, entry in enumerate(entries):
        name = f"{prefix}{i}.agent" if prefix else "agent"
        address = entry.agent or principal.agent
        if address is None:
            raise ApiError(422, "validation_error", f"{name}: required (this key is not bound to an agent)", {"field": name})
        if not principal.can_write_agent(address):
            raise ApiError(403, "forbidden", f"this key may not write heartbeats for {address}", {"field": name})
        addresses.append(address)
    return addresses


def ingest(engine: Engine, principal: Principal, entries: Sequence[HeartbeatEntry], addresses: Sequence[str], now: datetime,
           blocks: Sequence[ClientBlock] = (), grant_uses: Sequence[GrantUse] = ()) -> IngestResult:
    ids = [e.id or f"gen_{secrets.token_hex(12)}" for e in entries]
    digests = [entry_digest(e, a) for e, a in zip(entries, addresses)]

    def tx(conn: Connection) -> IngestResult:
        result = _ingest_tx(conn, entries, addresses, ids, digests, now, blocks)
        # After the entries: the spend they carry and the grants it settles land in one transaction.
        result.grants = _grants.apply_uses(conn, principal.org, grant_uses, int(now.timestamp()), settle=True)
        return result

    return in_transaction(engine, tx)


def entry_digest(entry: HeartbeatEntry, address: str) -> str:
    """What an entry id stands for: its agent, intent and amounts (not its window or status fields)."""
    content: dict[str, Any] = {"agent": address, "intent_id": entry.intent_id, "metrics": entry.metrics.digest_form(),
                               "by_model": {m: v.digest_form() for m, v in entry.by_model.items()}}
    if entry.repeats:  # schema 7; left out when empty so entries recorded before keep their digest
        content["repeats"] = entry.repeats
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _ingest_tx(conn: Connection, entries: Sequence[HeartbeatEntry], addresses: Sequence[str], ids: Sequence[str],
               digests: Sequence[str], now: datetime, blocks: Sequence[ClientBlock]) -> IngestResult:
    """Create the new agents the org may create (``_agent_quota``), record the entries of every other one, and
    answer entries for agents refused creation with a retryable ``agent_creation_rate_limited`` error each."""
    ts = int(now.timestamp())
    refused = _agent_quota.ensure_agents(conn, [*addresses, *(b.agent for b in blocks)], ts)
    if not refused:
        return _record_tx(conn, entries, addresses, ids, digests, now, blocks)
    keep = [i for i, a in enumerate(addresses) if a not in refused]
    result = _record_tx(conn, [entries[i] for i in keep], [addresses[i] for i in keep], [ids[i] for i in keep],
                        [digests[i] for i in keep], now, [b for b in blocks if b.agent not in refused])
    answers: list[dict[str, Any]] = [entry_result(entry_id, ERROR, AGENT_CREATION_RATE_LIMITED, refused[a].message(), "agent")
                                     if a in refused else {} for entry_id, a in zip(ids, addresses)]
    for i, answer in zip(keep, result.results):
        answers[i] = answer
    result.results = answers
    result.refused = {a: refused[a] for a in addresses if a in refused}
    return result


def _record_tx(conn: Connection, entries: Sequence[HeartbeatEntry], addresses: Sequence[str], ids: Sequence[str],
               digests: Sequence[str], now: datetime, blocks: Sequence[ClientBlock]) -> IngestResult:
    """The entries of existing agents: ids, counters, intents, client blocks, instances, evaluation."""
    ts = int(now.timestamp())
    touched = [*addresses, *(b.agent for b in blocks)]
    rows = _store.load_agents(conn, (_store.address_id(a) for a in touched))
    outcomes = _record_ids(conn, addresses, ids, digests, ts)
    fresh = [i for i, (status, _) in enumerate(outcomes) if status == RECORDED]
    seen = Repeats()
    alerts = _book(conn, [(entries[i], addresses[i]) for i in fresh], rows, now, ts, seen)
    _client_blocks.record(conn, rows, blocks, ((a, _store.instance_of(i)) for i, a in zip(ids, addresses)), ts)
    if not addresses:
        return IngestResult([], {}, alerts)
    spent_for = {_store.address_id(a) for a in addresses}
    _store.touch_agents(conn, spent_for, ts)
    _store.note_instances(conn, ((_store.address_id(a), _store.instance_of(i)) for i, a in zip(ids, addresses)), ts)
    live = _store.count_instances(conn, spent_for, ts)
    intents_here: dict[str, set[str]] = defaultdict(set)
    for e, a in zip(entries, addresses):
        if e.intent_id:
            intents_here[a].add(e.intent_id)
    unique = list(dict.fromkeys(addresses))
    statuses = load_statuses(conn, [rows[_store.address_id(a)] for a in unique], now, intents_here)
    for address in unique:
        statuses[address].instances = live[_store.address_id(address)]
        row = rows[_store.address_id(address)]
        alerts.extend(after_evaluation(conn, row, statuses[address], ts, seen.intents.get(row["address_id"], {})))
        alerts.extend(_spend_rate.check(conn, row, parse_policy(row["policy"]), now))
        _loops.add_answer(conn, row, statuses[address], ts, seen.fingerprints.get(row["address_id"], ()))
    results = [
        entry_result(entry_id, status, CONFLICT if status == CONFLICT else None, reason, "id" if reason else None)
        for entry_id, (status, reason) in zip(ids, outcomes)
    ]
    return IngestResult(results, statuses, alerts)


def _record_ids(conn: Connection, addresses: Sequence[str], ids: Sequence[str], digests: Sequence[str],
                ts: int) -> list[tuple[str, str | None]]:
    """Each entry's outcome: recorded (new id), duplicate (same id, same content) or conflict (with the reason).

    Ids are scoped per org. The first occurrence of an id in the request is the one inserted; later ones
    in the same request are compared with it like replays."""
    first: dict[tuple[str, str], int] = {}
    for i, (entry_id, address) in enumerate(zip(ids, addresses)):
        first.setdefault((_store.org_of(address), entry_id), i)
    by_org: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for (org, entry_id), i in first.items():
        by_org[org].append((entry_id, _store.address_id(addresses[i]), digests[i]))
    known: dict[tuple[str, str], tuple[str, str | None]] = {}
    fresh: set[int] = set()
    for org, rows in sorted(by_org.items()):
        new = _store.record_entries(conn, org, rows, ts)
        for entry_id, aid, digest in rows:
            if entry_id in new:
                fresh.add(first[(org, entry_id)])
                known[(org, entry_id)] = (aid, digest)
        for entry_id, stored in _store.recorded_entries(conn, org, [r[0] for r in rows if r[0] not in new]).items():
            known[(org, entry_id)] = stored
    outcomes: list[tuple[str, str | None]] = []
    for i, (entry_id, address) in enumerate(zip(ids, addresses)):
        key = (_store.org_of(address), entry_id)
        if i in fresh:
            outcomes.append((RECORDED, None))
            continue
        stored_aid, stored_digest = known.get(key, (_store.address_id(address), None))
        if stored_aid != _store.address_id(address):
            outcomes.append((CONFLICT, f"entry id {entry_id!r} was already recorded for another agent; "
                                       "nothing was booked (every entry needs an id of its own)"))
        elif stored_digest is not None and stored_digest != digests[i]:
            outcomes.append((CONFLICT, f"entry id {entry_id!r} was already recorded with different amounts or intent; "
                                       "nothing was booked (a replay must carry the same content)"))
        else:
            outcomes.append((DUPLICATE, None))
    return outcomes


@dataclass(slots=True)
class Repeats:
    """The identical-request counts a batch carried, per agent: which fingerprints, and under which intent."""

    deltas: dict[_loops.RepeatKey, int] = field(default_factory=lambda: defaultdict(int))
    fingerprints: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    intents: dict[str, dict[str, str | None]] = field(default_factory=lambda: defaultdict(dict))

    def note(self, aid: str, start: int, entry: HeartbeatEntry) -> None:
        for fp, n in entry.repeats.items():
            self.deltas[(aid, start, fp)] += n
            self.fingerprints[aid].add(fp)
            self.intents[aid][fp] = entry.intent_id


def _book(conn: Connection, booked: Sequence[tuple[HeartbeatEntry, str]], rows: Mapping[str, Mapping[Any, Any]], now: datetime, ts: int,
          seen: Repeats | None = None) -> list[Alert]:
    """Add the new entries to counters and intents (aggregated in memory first: one upsert per row), and
    their identical-request counts (``repeats``) for agents with a loop policy."""
    deltas: dict[_store.CounterKey, list[int]] = defaultdict(lambda: [0] * len(_store.COUNTER_FIELDS))
    intent_deltas: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    starts_cache: dict[str, dict[str, int]] = {}
    for entry, address in booked:
        aid = _store.address_id(address)
        starts = starts_cache.get(aid)
        if starts is None:
            policy = parse_policy(rows[aid]["policy"])
            starts = starts_cache[aid] = window_starts(now, policy.timezone if policy else None)
        m = entry.metrics
        cost = _reprice.amounts(conn, entry, now)  # the client's amounts, or the gateway's price of unpriced models
        values = (cost.total, m.llm_calls, m.tokens_in, m.tokens_out)
        for window, start in starts.items():
            _add(deltas[(aid, window, start, "total", "")], (*values, 1, 0))
            if entry.intent_id:
                _add(deltas[(aid, window, start, "intent", entry.intent_id)], (*values, 1, 0))
            for model, mm in entry.by_model.items():
                _add(deltas[(aid, window, start, "model", model)], (cost.by_model[model], mm.llm_calls, mm.tokens_in, mm.tokens_out, 1, 0))
        if entry.intent_id:
            _add(intent_deltas[(_store.org_of(address), entry.intent_id, aid)], values)  # type: ignore[index]
        if entry.repeats and seen is not None:
            policy = parse_policy(rows[aid]["policy"])
            if policy is not None and policy.max_identical_requests_per_hour is not None:
                seen.note(aid, starts["hour"], entry)
    if seen is not None:
        _loops.add(conn, seen.deltas)
    created = _store.book_intents(conn, intent_deltas, ts)  # type: ignore[arg-type]
    for org, intent_id, aid in intent_deltas:  # type: ignore[misc]
        if (org, intent_id) in created:
            for window, start in starts_cache[aid].items():
                deltas[(aid, window, start, "total", "")][5] += 1
    _store.add_counters(conn, deltas)
    return []


def _add(target: list[int], values: Sequence[int]) -> None:
    for i, v in enumerate(values):
        target[i] += v


def after_evaluation(conn: Connection, row: Mapping[Any, Any], status: AgentStatus, ts: int,
                     loop_intents: Mapping[str, str | None] | None = None) -> list[Alert]:
    """Side effects of a fresh evaluation: breach events (+ ``pause``) and threshold alerts, each claimed once."""
    policy = parse_policy(row["policy"])
    if policy is None:
        return []
    org, aid = row["org"], row["address_id"]
    alerts: list[Alert] = []
    loop = status.policy(LOOP_POLICY)
    if loop is not None and loop.breached and loop.window_start is not None:
        alerts.extend(_on_loop(conn, row, status, policy, loop, loop_intents or {}, ts))
    for p in status.policies:
        if p.kind != "usd" or p.window_start is None:
            continue
        start = int(p.window_start.timestamp())
        if p.breached and _store.claim_alert(conn, aid, p.name, start, breach_claim(p), ts):
            alerts.extend(_on_breach(conn, row, status, policy, p, ts))
        for threshold in policy.alert_thresholds:
            if p.spent * 1_000_000 >= p.limit * round(threshold * 1_000_000):
                key = f"{threshold:g}"
                if _store.claim_alert(conn, aid, p.name, start, key, ts):
                    data = {**_policy_data(row["address"], p), "threshold": key}
                    _store.add_event(conn, org, aid, "alert.triggered", data, ts)
                    alerts.append(Alert(org, aid, row["address"], p.name, key, money(p.limit), money(p.spent), data["resets_at"],
                                        json.loads(json.dumps(policy.notify.model_dump()))))
    return alerts


#: What the first breach of a policy in a window does: (event type, stored state it moves an active agent to).
BREACH_ACTIONS: dict[str, tuple[str, str | None]] = {
    "block": ("agent.blocked", None),
    "notify": ("policy.breached", None),
    "pause": ("agent.paused", "paused"),
    "require_approval": ("agent.paused", "paused"),
    "kill": ("agent.killed", "killed"),
}


def breach_claim(p: PolicyStatus) -> str:
    """The claim key of a breach: ``breach`` for the policy's own limit; a limit raised by approvals is a new
    limit whose breach is claimed (and so pauses and asks again) once more (fits the 16-character column)."""
    if not p.raised:
        return "breach"
    return "breach:" + hashlib.sha256(str(p.raised).encode()).hexdigest()[:8]


def _on_breach(conn: Connection, row: Mapping[Any, Any], status: AgentStatus, policy: CostPolicy, p: PolicyStatus,
               ts: int) -> list[Alert]:
    """First breach of this policy in this window (claimed once across replicas): event, and a state change when asked.

    Changing state only on the first breach means an admin's resume sticks for the rest of the window.
    ``require_approval`` also opens an approval request; its notification is returned for delivery."""
    org, aid = row["org"], row["address_id"]
    action = policy.action_on_breach
    kind, new_state = BREACH_ACTIONS[action]
    data = _policy_data(row["address"], p)
    out: list[Alert] = []
    if new_state is not None:
        if status.state == "active" and _store.set_state(conn, aid, new_state) == "active":
            status.state = new_state
            data["by"] = "policy"
            if action == "require_approval" and p.kind == "usd":  # a loop breach pauses: no money to approve
                approval = _open_approval(conn, row, policy, p, ts)
                data.update(approval_required=True, approval_id=approval.id,
                            message=f"{row['address']} is paused until an admin approves more budget ({approval.id})")
                out.append(_approval_alert(approval, policy, ts))
        else:
            kind = "policy.breached"
    _store.add_event(conn, org, aid, kind, data, ts)
    return out


def _open_approval(conn: Connection, row: Mapping[Any, Any], policy: CostPolicy, p: PolicyStatus, ts: int) -> _approvals.Approval:
    own_limit = p.limit - p.raised
    raise_amount = policy.approval_raise_usd or own_limit
    start = int(p.window_start.timestamp()) if p.window_start else ts
    resets = int(p.resets_at.timestamp()) if p.resets_at else ts + 86_400
    return _approvals.open_request(conn, row, p.name, p.window or "day", start, resets, p.limit, p.spent, int(raise_amount), ts)


def _approval_alert(approval: _approvals.Approval, policy: CostPolicy, ts: int) -> Alert:
    """The request as an alert: Slack gets Approve/Deny buttons, email signed links, webhooks the JSON."""
    return Alert(approval.org, approval.address_id, approval.address, approval.policy, "approval", money(approval.limit),
                 money(approval.spent), iso(approval.resets_at), json.loads(json.dumps(policy.notify.model_dump())),
                 kind="approval", details=approval.to_wire(ts))


def _on_loop(conn: Connection, row: Mapping[Any, Any], status: AgentStatus, policy: CostPolicy, p: PolicyStatus,
             loop_intents: Mapping[str, str | None], ts: int) -> list[Alert]:
    """An identical request passed ``max_identical_requests_per_hour``: once per agent and hour across replicas
    (the alert claim), a ``loop.detected`` event, the breach action (event; pause / kill change the state) and
    an alert through the policy's channels, whatever the action."""
    org, aid = row["org"], row["address_id"]
    start = int(p.window_start.timestamp()) if p.window_start else 0
    if not _store.claim_alert(conn, aid, p.name, start, "breach", ts):
        return []
    fingerprint, intent = _loops.culprit(conn, aid, start, p.spent, loop_intents)
    data = {**_policy_data(row["address"], p), "count": p.spent, "intent": intent, "fingerprint": fingerprint,
            "action": policy.action_on_breach}
    _store.add_event(conn, org, aid, "loop.detected", data, ts)
    _on_breach(conn, row, status, policy, p, ts)
    where = f" in intent {intent}" if intent else ""
    message = (f"[axme-meter] {row['address']} sent the same request {p.spent} times this hour{where} "
               f"(max_identical_requests_per_hour is {p.limit}): a runaway loop? action: {policy.action_on_breach}")
    return [Alert(org, aid, row["address"], p.name, "loop", str(p.limit), str(p.spent), data["resets_at"],
                  json.loads(json.dumps(policy.notify.model_dump())), kind="loop", message=message)]


def _policy_data(address: str, p: PolicyStatus) -> dict[str, Any]:
    wire = p.to_wire()
    return {"agent": address, "policy": p.name, "limit": wire["limit"], "spent": wire["spent"], "resets_at": wire["resets_at"],
            "window": p.window}


@dataclass(slots=True)
class IntentOutcome:
    intent_id: str
    created: bool
    status: AgentStatus
    refusal: PolicyStatus | None
    alerts: list[Alert]


def register_intent(engine: Engine, principal: Principal, body: IntentCreate, now: datetime) -> IntentOutcome:
    """Check the agent's policies and, when allowed, record the intent (counted once per id)."""
    address = body.agent or principal.agent
    if address is None:
        raise ApiError(422, "validation_error", "agent: required (this key is not bound to an agent)", {"field": "agent"})
    if not principal.can_write_agent(address):
        raise ApiError(403, "forbidden", f"this key may not register intents for {address}", {"field": "agent"})
    intent_id = body.intent_id or f"int_{secrets.token_hex(8)}"
    return in_transaction(engine, lambda conn: _intent_tx(conn, address, intent_id, body.labels, now))


def _intent_tx(conn: Connection, address: str, intent_id: str, labels: Mapping[str, str], now: datetime) -> IntentOutcome:
    ts = int(now.timestamp())
    aid = _store.address_id(address)
    row = _store.load_agents(conn, [aid]).get(aid)
    if row is None:
        _agent_quota.ensure_agent(conn, address, ts, "agent")
        row = _store.load_agents(conn, [aid])[aid]
    policy = parse_policy(row["policy"])
    if conn.dialect.name == "postgresql" and policy is not None and (policy.max_intents_per_day or policy.max_intents_per_hour):
        # serialise this agent's intent admissions across replicas so the count limit is exact
        # (SQLite needs nothing: BEGIN IMMEDIATE already admits one writer at a time)
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(aid[5:20], 16)})
    status = load_status(conn, row, now, {intent_id})
    status.instances = _store.count_instances(conn, [aid], ts)[aid]
    refusal = None
    if status.state in ("active", "blocked"):
        refusal = intent_refusal(status, policy, intent_id)
        if refusal is not None and refusal.kind == "intents" and intent_id in _store.intent_costs(conn, _store.org_of(address), [intent_id]):
            refusal = None  # re-registering an existing intent does not start new work
    if status.state != "active" or refusal is not None:
        return IntentOutcome(intent_id, False, status, refusal, [])
    created = _store.register_intent(conn, _store.org_of(address), intent_id, aid, labels, ts)
    if created:
        starts = window_starts(now, policy.timezone if policy else None)
        _store.add_counters(conn, {(aid, w, s, "total", ""): (0, 0, 0, 0, 0, 1) for w, s in starts.items()})
        for p in status.policies:  # the answer shows the count including this intent
            if p.kind == "intents":
                p.spent += 1
    return IntentOutcome(intent_id, created, status, None, after_evaluation(conn, row, status, ts))
