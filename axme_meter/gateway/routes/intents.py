"""``POST /v1/mesh/intents`` (policy check + register) and ``GET /v1/mesh/intents/{intent_id}`` (its cost)."""

from __future__ import annotations

import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from .. import _queries
from .._errors import not_found
from .._ingest import register_intent
from .._results import IntentCost
from .._schemas import IntentCreate
from . import _wire
from ._common import block_error, gateway, principal, read_json, validate


async def create_intent(request: Request) -> JSONResponse:
    gw = gateway(request)
    who = principal(request)
    body = validate(IntentCreate, await read_json(request))
    now = gw.clock.now()
    started = time.perf_counter()
    outcome = await run_in_threadpool(register_intent, gw.engine, who, body, now)
    gw.metrics.policy_seconds.observe(time.perf_counter() - started)
    gw.dispatcher.submit(outcome.alerts)
    status = outcome.status
    if status.state != "active" or outcome.refusal is not None:
        err = block_error(status, now, outcome.refusal)
        gw.metrics.rejects.labels(err.code).inc()
        return err.response()
    return JSONResponse(
        {"ok": True, "intent_id": outcome.intent_id, "created": outcome.created, "agent": status.address,
         **status.to_wire()},
        status_code=201,
    )


async def get_intent(request: Request) -> JSONResponse:
    gw = gateway(request)
    who = principal(request)
    intent_id = request.path_params["intent_id"]

    def read() -> IntentCost | None:
        with gw.engine.connect() as conn:
            return _queries.intent_cost(conn, who.org, intent_id)

    found = await run_in_threadpool(read)
    if found is None:
        raise not_found(f"intent {intent_id!r}")
    return JSONResponse(_wire.intent(found))
