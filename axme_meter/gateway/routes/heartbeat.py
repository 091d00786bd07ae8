"""``POST /v1/mesh/heartbeat``: one entry, a batch, or AXME's SDK body (``{}`` / ``{"metrics": …}``)."""

from __future__ import annotations

import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from .._ingest import ingest, resolve_agents
from .._schemas import GrantUse, HeartbeatBatch, HeartbeatEntry
from ._common import block_error, gateway, principal, read_json, validate


async def heartbeat(request: Request) -> JSONResponse:
    gw = gateway(request)
    started = time.perf_counter()
    who = principal(request)
    data = await read_json(request, allow_empty=True)
    uses: list[GrantUse] = []
    if isinstance(data, dict) and "heartbeats" in data:
        batch = validate(HeartbeatBatch, data)
        entries, uses = batch.heartbeats, batch.grants
        prefix = "heartbeats."
    else:
        entries = [validate(HeartbeatEntry, data)]
        prefix = ""
    addresses = resolve_agents(who, entries, prefix)
    now = gw.clock.now()
    result = await run_in_threadpool(ingest, gw.engine, who, entries, addresses, now, uses)
    gw.dispatcher.submit(result.alerts)
    body: dict[str, object] = {"results": result.results,
                               "agents": {a: s.to_wire(money_only=True) for a, s in result.statuses.items()}}
    if uses:
        body["grants"] = result.grants
    for r in result.results:
        gw.metrics.entries.labels(r["status"]).inc()
    gw.metrics.note_states({s.address_id: s.state for s in result.statuses.values()})
    gw.metrics.ingest_seconds.observe(time.perf_counter() - started)
    statuses = list(result.statuses.values())
    if statuses and all(s.state != "active" for s in statuses):
        err = block_error(statuses[0], now)
        gw.metrics.rejects.labels(err.code).inc()
        return JSONResponse({**body, **err.body()}, status_code=err.status, headers=err.headers)
    return JSONResponse(body)
