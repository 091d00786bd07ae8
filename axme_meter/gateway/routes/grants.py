"""``POST /v1/mesh/grants``: a client process asks for its slices of an agent's money policies (see ``_grants``)."""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from ... import _money
from ..._protocol import money
from .._errors import ApiError
from .._grants import GrantOutcome, grant_tx, unpriced_rule
from .._ingest import in_transaction
from .._schemas import GrantRequest
from .._store import org_of
from ._common import block_error, gateway, principal, read_json, validate
from .prices import snapshot

#: A refusal because other processes hold the rest of the budget is retried soon: they return or spend it.
RESERVED_RETRY_SECONDS = 5


async def create_grants(request: Request) -> JSONResponse:
    gw = gateway(request)
    who = principal(request)
    body = validate(GrantRequest, await read_json(request))
    address = body.agent or who.agent
    if address is None:
        raise ApiError(422, "validation_error", "agent: required (this key is not bound to an agent)", {"field": "agent"})
    if not who.can_write_agent(address):
        raise ApiError(404, "not_found", f"agent {address!r} not found", {"resource": "agent"})
    now = gw.clock.now()
    started = time.perf_counter()
    outcome: GrantOutcome = await run_in_threadpool(
        in_transaction, gw.engine, lambda conn: grant_tx(conn, org_of(address), address, body, now))
    gw.metrics.policy_seconds.observe(time.perf_counter() - started)
    status = outcome.status
    if status.state != "active" or outcome.refusal is not None:
        err = block_error(status, now, outcome.refusal)
        if outcome.refusal is not None and not outcome.refusal.breached:
            _explain_short(err, address, outcome)
        gw.metrics.rejects.labels(err.code).inc()
        return err.response()
    answer: dict[str, Any] = {
        "agent": address, "address_id": status.address_id, "state": status.state,
        "grants": [g.to_wire() for g in outcome.grants],
        # No money policy: nothing to grant, the process may spend (blocks still arrive with heartbeats).
        "unlimited": not outcome.grants,
        "call_cost_usd": money(outcome.call_cost),
    }
    if status.loop is not None:
        answer["loop"] = status.loop
    rule = unpriced_rule(outcome.policy, gw.settings.unpriced_rates or (await snapshot(gw.prices)).dearest)
    if rule is not None:
        answer["unpriced"] = rule
    return JSONResponse(answer)


def _explain_short(err: ApiError, address: str, outcome: GrantOutcome) -> None:
    """Not over the limit, but not enough left for the next call: say how much is left and where the rest is."""
    p = outcome.refusal
    assert p is not None

    def usd(pico: int) -> str:
        return _money.display_usd(_money.to_decimal(pico))

    held = f", {usd(outcome.reserved)} granted to running processes and not reported spent yet" if outcome.reserved else ""
    err.message = (f"{address} has {usd(outcome.free)} left of its {p.name} of {usd(p.limit)} ({usd(p.spent)} reported "
                   f"spent{held}): not enough for the next call (about {usd(outcome.call_cost)})")
    if outcome.held_elsewhere > 0:
        # They spend it or give it back soon: worth asking again shortly.
        err.message += "; retry shortly"
        err.headers["Retry-After"] = str(min(int(err.headers.get("Retry-After", "1")), RESERVED_RETRY_SECONDS))
        err.extra["reserved"] = True
