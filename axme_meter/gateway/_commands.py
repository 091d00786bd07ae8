"""Every admin write, in one place: cost policies, pause / resume / kill, keys, loaded price files.

The JSON API (``routes/``), the dashboard (``dashboard/_views``) and the ``keys`` CLI
all call these functions, so the rules are enforced once:

- only admin keys write, and a key's scope is its ceiling: a key bound to an agent
  acts only on that agent, and creates, lists or revokes only keys bound to it;
- an agent in another org answers 404 (as if missing); one visible but outside a
  bound key's scope answers 403;
- every change writes an audit event carrying ``"by": <key prefix>``
  (``policy.updated``, ``policy.deleted``, ``agent.paused|resumed|killed``,
  ``key.created``, ``key.revoked``, ``prices.loaded``, ``prices.unloaded``), with webhook URLs redacted;
- the price table is shared by every org, so only the super-admin (org ``*``) loads price files;
- a policy written back with the redacted URLs that reads show keeps the stored ones;
- approval requests are decided here too (``approval.approved|denied``, ``agent.resumed``, with the
  approver: a key prefix, or for Slack and email the user id / address a signed token was sent to).

Functions take the engine and run their own transaction (``in_transaction``: retried
on PostgreSQL deadlocks, serialised on SQLite); refusals are raised as ``ApiError``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from .. import _attribution
from .._pricing import PriceFileError
from .._pricing._load import PriceFile
from . import _agent_quota, _approvals, _prices, _queries, _store
from ._auth import Principal, new_key, require_admin
from ._errors import ApiError, not_found
from ._ingest import in_transaction
from ._redact import RedactedValue, keep_secrets, redact_policy
from ._schemas import CostPolicy
from ._windows import iso

#: action → (stored state, event type)
TRANSITIONS: dict[str, tuple[str, str]] = {
    "pause": ("paused", "agent.paused"), "resume": ("active", "agent.resumed"), "kill": ("killed", "agent.killed"),
}


def _by(who: Principal) -> str:
    return who.prefix or "unknown"


def _outside_scope(who: Principal) -> ApiError:
    return ApiError(403, "forbidden", f"this key is bound to {who.agent} and may act only on that agent",
                    {"field": "address_id"})


def _target(conn: Connection, who: Principal, ref: str, ts: int, *, create: bool) -> Mapping[Any, Any]:
    """The agent a write is about, checked against the key's scope.

    With ``create``, a full address of the caller's org that never reported is created
    on the spot (so a policy can be set before the agent's first heartbeat)."""
    row = _queries.find_agent(conn, who.org, ref)
    if row is None and create and ref.startswith("agent://"):
        try:
            address = _attribution.validate_address(ref)
        except ValueError:
            raise ApiError(422, "validation_error", f"address_id: invalid agent address {ref!r}", {"field": "address_id"}) from None
        if not who.can_see_org(_store.org_of(address)):
            raise not_found(f"agent {ref!r}")
        if not who.can_write_agent(address):
            raise _outside_scope(who)
        _agent_quota.ensure_agent(conn, address, ts, "address_id")
        row = _queries.find_agent(conn, who.org, ref)
    if row is None:
        raise not_found(f"agent {ref!r}")
    if not who.can_write_agent(row["address"]):
        raise _outside_scope(who)
    return row


def shown_policy(who: Principal, address: str, wire: dict[str, Any] | None) -> dict[str, Any] | None:
    """A wire-form policy as ``who`` may see it: webhook URLs in full for org admins, redacted otherwise."""
    return wire if who.reads_secrets_of(address) else redact_policy(wire)


# -- cost policies ---------------------------------------------------------------------------------

def set_policy(engine: Engine, who: Principal, ref: str, policy: CostPolicy, now: datetime) -> dict[str, Any]:
    """``PUT …/policies/cost`` (set or replace): the API's answer, with URLs as ``who`` may see them."""
    require_admin(who)
    ts = int(now.timestamp())

    def tx(conn: Connection) -> dict[str, Any]:
        row = _target(conn, who, ref, ts, create=True)
        old = json.loads(row["policy"]) if row["policy"] else None
        try:
            stored = keep_secrets(policy.to_storage(), old)
        except RedactedValue as exc:
            error = {"field": exc.field, "message": str(exc).split(": ", 1)[1], "type": "redacted_value"}
            raise ApiError(422, "validation_error", str(exc), {"field": exc.field, "errors": [error]}) from None
        _store.set_policy(conn, row["address_id"], stored, ts)
        wire = {**policy.to_wire(), "notify": stored["notify"]}
        _store.add_event(conn, row["org"], row["address_id"], "policy.updated",
                         {"agent": row["address"], "policy": redact_policy(wire), "by": _by(who)}, ts)
        status = _queries.load_status(conn, {**row, "policy": json.dumps(stored)}, now)
        shown = shown_policy(who, row["address"], wire) or {}
        return {"ok": True, "address_id": row["address_id"], "address": row["address"], "policy": shown,
                "state": status.state, "policies": [p.to_wire() for p in status.policies], **shown}

    return in_transaction(engine, tx)


def delete_policy(engine: Engine, who: Principal, ref: str, now: datetime) -> dict[str, Any]:
    require_admin(who)
    ts = int(now.timestamp())

    def tx(conn: Connection) -> dict[str, Any]:
        row = _queries.find_agent(conn, who.org, ref)
        if row is None or row["policy"] is None:
            raise not_found(f"cost policy of {ref!r}")
        if not who.can_write_agent(row["address"]):
            raise _outside_scope(who)
        _store.set_policy(conn, row["address_id"], None, ts)
        _store.add_event(conn, row["org"], row["address_id"], "policy.deleted", {"agent": row["address"], "by": _by(who)}, ts)
        return {"ok": True, "address_id": row["address_id"], "address": row["address"], "deleted": True}

    return in_transaction(engine, tx)


# -- agent states ----------------------------------------------------------------------------------

def change_state(engine: Engine, who: Principal, ref: str, action: str, now: datetime) -> dict[str, Any]:
    """Pause / resume / kill (``action`` in ``TRANSITIONS``); works by full address before the first heartbeat."""
    require_admin(who)
    if action not in TRANSITIONS:
        raise ApiError(422, "validation_error", f"action: must be one of {', '.join(TRANSITIONS)}", {"field": "action"})
    state, event = TRANSITIONS[action]
    ts = int(now.timestamp())

    def tx(conn: Connection) -> dict[str, Any]:
        row = _target(conn, who, ref, ts, create=True)
        before = _store.set_state(conn, row["address_id"], state)
        if before != state:
            _store.add_event(conn, row["org"], row["address_id"], event,
                             {"agent": row["address"], "from": before, "by": _by(who)}, ts)
        status = _queries.load_status(conn, {**row, "state": state}, now)
        return {"ok": True, "address_id": row["address_id"], "address": row["address"], "previous_state": before,
                "state": status.state, "policies": [p.to_wire() for p in status.policies]}

    return in_transaction(engine, tx)


# -- keys ------------------------------------------------------------------------------------------

def _key_view(row: Mapping[Any, Any], who: Principal) -> dict[str, Any]:
    return {"prefix": row["prefix"], "org": row["org"], "admin": bool(row["is_admin"]), "agent": row["agent"],
            "created_at": iso(row["created_at"]), "current": row["prefix"] == who.prefix}


def _key_event(conn: Connection, type_: str, org: str, agent: str | None, data: dict[str, Any], ts: int) -> None:
    aid = _store.address_id(agent) if agent else None
    _store.add_event(conn, org, aid, type_, data, ts)


def create_key(engine: Engine, who: Principal, org: str, *, admin: bool, agent: str | None, now: datetime) -> dict[str, Any]:
    """Mint a key inside ``who``'s scope; the answer carries the key itself (shown this once)."""
    require_admin(who)
    if not who.can_see_org(org):
        raise ApiError(403, "forbidden", "an org admin key may only create keys for its own org", {"field": "org"})
    if agent is not None:
        try:
            _attribution.validate_address(agent)
        except ValueError as exc:
            raise ApiError(422, "validation_error", f"agent: {exc}", {"field": "agent"}) from None
        if org != "*" and _store.org_of(agent) != org:
            raise ApiError(422, "validation_error", "agent: must belong to the key's org", {"field": "agent"})
    if who.agent is not None and agent != who.agent:
        raise ApiError(403, "forbidden", f"this key is bound to {who.agent}: the keys it creates must be bound to it too",
                       {"field": "agent"})
    key = new_key()
    ts = int(now.timestamp())

    def tx(conn: Connection) -> dict[str, Any]:
        _store.insert_key(conn, key, org, admin=admin, agent=agent, now=ts)
        prefix = _store.key_prefix(key)
        _key_event(conn, "key.created", org, agent, {"agent": agent, "prefix": prefix, "org": org, "admin": admin,
                                                     "by": _by(who)}, ts)
        return {"ok": True, "key": key, "prefix": prefix, "org": org, "admin": admin, "agent": agent}

    return in_transaction(engine, tx)


def list_keys(engine: Engine, who: Principal) -> dict[str, Any]:
    """The keys inside ``who``'s scope (prefixes only: keys are stored hashed and never shown again)."""
    require_admin(who)
    with engine.connect() as conn:
        rows = _store.list_keys(conn, who.org, who.agent)
    return {"ok": True, "keys": [_key_view(r, who) for r in rows]}


def revoke_key(engine: Engine, who: Principal, prefix: str, now: datetime, *, whole_key: str | None = None
               ) -> tuple[dict[str, Any], str]:
    """Delete the key named by ``prefix`` (or given whole, for the CLI) and its dashboard sessions.

    Returns (answer, key hash). Every replica refuses the key within
    ``_auth.KEY_CACHE_SECONDS``; the caller drops it from its own cache at once."""
    require_admin(who)
    ts = int(now.timestamp())

    def tx(conn: Connection) -> tuple[dict[str, Any], str]:
        rows = [r for r in [_store.find_key(conn, whole_key)] if r] if whole_key else _store.keys_by_prefix(conn, prefix)
        found = [r for r in rows if who.covers(r["org"], r["agent"])]
        if not found:
            raise not_found(f"key {prefix!r}")
        if len(found) > 1:
            raise ApiError(409, "ambiguous", f"{len(found)} keys share the prefix {prefix!r}; revoke the one you mean by "
                           "passing the whole key to 'axme-meter keys revoke --db URL'", {"field": "prefix", "matches": len(found)})
        row = found[0]
        _store.delete_key(conn, row["key_hash"])
        _key_event(conn, "key.revoked", row["org"], row["agent"],
                   {"agent": row["agent"], "prefix": row["prefix"], "org": row["org"], "admin": bool(row["is_admin"]),
                    "by": _by(who)}, ts)
        return {"ok": True, "revoked": _key_view(row, who)}, str(row["key_hash"])

    return in_transaction(engine, tx)


# -- price files -----------------------------------------------------------------------------------

def _require_super_admin(who: Principal) -> None:
    require_admin(who)
    if who.org != "*" or who.agent is not None:
        raise ApiError(403, "forbidden", "the price table is shared by every org on this gateway: loading or unloading "
                       "a price file needs the super-admin key (org '*')")


def _price_file_error(name: str, exc: PriceFileError) -> ApiError:
    details = {"file": name, "model": exc.model, "field": exc.field}
    return ApiError(422, "invalid_price_file", f"{str(exc).rstrip('.')}. Nothing was loaded.", details)


def _check_against_table(name: str, parsed: PriceFile, others: list[_prices.Loaded]) -> None:
    """A loaded alias may not name another model: the table would keep pricing that name as the other model."""
    table = _prices.build(others).table
    ids = {e.id for e in parsed.entries}
    for entry in parsed.entries:
        for alias in entry.aliases:
            if alias in table.entries and alias not in ids:
                raise _price_file_error(name, PriceFileError(
                    f"{name}: model {entry.id!r}, field 'aliases': {alias!r} is the id of another model in the gateway's "
                    f"price table. Fix: give {alias!r} its own [[models]] entry (an entry with that id replaces it)",
                    origin=name, model=entry.id, field="aliases"))


def load_prices(engine: Engine, who: Principal, name: str, toml: str, now: datetime) -> dict[str, Any]:
    """Load a price file over the bundled table (replacing a file loaded under the same ``name``).

    The file is checked as a whole before anything is stored: a bad rate, a rate with no unit,
    overlapping price histories or an alias taking another model's name refuse it (422) and
    nothing changes. The answer carries the new ``pricing_version``."""
    _require_super_admin(who)
    try:
        parsed = _prices.parse_stored(name, toml)
    except PriceFileError as exc:
        raise _price_file_error(name, exc) from None
    if not parsed.entries:
        raise _price_file_error(name, PriceFileError(
            f"{name}, field 'models': the file has no [[models]] entry. Fix: add the models to price (format: "
            "pricing/README.md); to drop a loaded file, unload it", origin=name, field="models"))
    ts = int(now.timestamp())
    loaded = _prices.Loaded(name, parsed, hashlib.sha256(parsed.raw).hexdigest(), ts, _by(who))

    def tx(conn: Connection) -> dict[str, Any]:
        _prices.lock_for_write(conn)
        before = _prices.effective(conn).loaded
        others = [f for f in before if f.name != name]
        _check_against_table(name, parsed, others)
        _prices.store_file(conn, loaded, toml)
        snapshot = _prices.build([*others, loaded])
        models = [e.id for e in parsed.entries]
        replaced = len(others) != len(before)
        _store.add_event(conn, "*", None, "prices.loaded", {"name": name, "sha256": loaded.sha256, "models": models,
                                                          "replaced": replaced, "pricing_version": snapshot.version,
                                                          "by": _by(who)}, ts)
        return {"ok": True, "name": name, "sha256": loaded.sha256, "models": models, "replaced": replaced,
                "pricing_version": snapshot.version, "loaded": [f.name for f in snapshot.loaded]}

    return in_transaction(engine, tx)


def unload_prices(engine: Engine, who: Principal, name: str, now: datetime) -> dict[str, Any]:
    """Drop a loaded price file: its models price as the bundled table (or the other loaded files) say again."""
    _require_super_admin(who)
    ts = int(now.timestamp())

    def tx(conn: Connection) -> dict[str, Any]:
        _prices.lock_for_write(conn)
        if not _prices.delete_file(conn, name):
            raise not_found(f"loaded price file {name!r}")
        snapshot = _prices.effective(conn)
        _store.add_event(conn, "*", None, "prices.unloaded", {"name": name, "pricing_version": snapshot.version,
                                                            "by": _by(who)}, ts)
        return {"ok": True, "name": name, "pricing_version": snapshot.version, "loaded": [f.name for f in snapshot.loaded]}

    return in_transaction(engine, tx)


# -- approvals -------------------------------------------------------------------------------------

APPROVAL_STATES = ("pending", "approved", "denied", "expired")


def list_approvals(engine: Engine, who: Principal, now: datetime, *, state: str | None = None,
                   agent: str | None = None, limit: int = 100) -> dict[str, Any]:
    """Approval requests inside ``who``'s scope, newest first (``state``: pending, approved, denied, expired)."""
    require_admin(who)
    if state is not None and state not in APPROVAL_STATES:
        raise ApiError(422, "validation_error", f"state: must be one of {', '.join(APPROVAL_STATES)}", {"field": "state"})
    ts = int(now.timestamp())
    with engine.connect() as conn:
        agent_id = None
        if agent is not None:
            row = _queries.find_agent(conn, who.org, agent)
            if row is None:
                raise not_found(f"agent {agent!r}")
            agent_id = row["address_id"]
        found = _approvals.list_requests(conn, who.org, state=state, agent_id=agent_id, bound_agent=who.agent, now=ts,
                                         limit=limit)
    return {"ok": True, "approvals": [a.to_wire(ts) for a in found]}


def get_approval(engine: Engine, who: Principal, approval_id: str, now: datetime) -> dict[str, Any]:
    require_admin(who)
    with engine.connect() as conn:
        found = _approvals.visible(conn, who.org, approval_id, who.agent)
    return {"ok": True, "approval": found.to_wire(int(now.timestamp()))}


def decide_approval(engine: Engine, who: Principal, approval_id: str, decision: str, now: datetime, *,
                    channel: str = "api") -> dict[str, Any]:
    """Approve (raise the limit for the rest of the window, resume the agent) or deny (it stays paused).

    The approver recorded in the events is the key's prefix; another org's request is a 404, a decided one
    a 409 and one whose window ended a 410, and none of them changes anything."""
    require_admin(who)
    if decision not in _approvals.DECISIONS:
        raise ApiError(422, "validation_error", "decision: must be approve or deny", {"field": "decision"})
    ts = int(now.timestamp())

    def tx(conn: Connection) -> dict[str, Any]:
        found = _approvals.visible(conn, who.org, approval_id, who.agent)
        return _approvals.decide(conn, found, decision, _by(who), channel, ts)

    return in_transaction(engine, tx)


def decide_by_token(engine: Engine, org: str, approval_id: str, decision: str, by: str, channel: str,
                    now: datetime) -> dict[str, Any]:
    """A decision from a signed Slack button or email link: the token (already verified) names the org and
    the approval; ``by`` is the Slack user id or the email address the link was sent to."""
    ts = int(now.timestamp())

    def tx(conn: Connection) -> dict[str, Any]:
        found = _approvals.visible(conn, org, approval_id)
        return _approvals.decide(conn, found, decision, by, channel, ts)

    return in_transaction(engine, tx)


def approval_for_token(engine: Engine, org: str, approval_id: str) -> _approvals.Approval:
    """The request a verified token names (404 if it is gone or, impossibly for a genuine token, another org's)."""
    with engine.connect() as conn:
        return _approvals.visible(conn, org, approval_id)
