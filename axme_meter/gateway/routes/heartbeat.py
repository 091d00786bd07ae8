"""``POST /v1/mesh/heartbeat``: one entry, a batch, or AXME's SDK body (``{}`` / ``{"metrics": …}``).

A single entry is accepted or refused as a whole (422 / 403, as AXME's SDK expects).
A batch is answered entry by entry (``_batch.py``): the good entries are recorded
and the answer is 200 with one result per entry, whatever the others were.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from .._agent_quota import error as rate_error
from .._batch import check_entries, writable_blocks
from .._ingest import ingest, resolve_agents
from .._schemas import ClientBlock, GrantUse, HeartbeatBatch, HeartbeatEntry
from ._common import block_error, gateway, principal, read_json, validate
from .prices import snapshot


async def heartbeat(request: Request) -> JSONResponse:
    gw = gateway(request)
    started = time.perf_counter()
    who = principal(request)
    data = await read_json(request, allow_empty=True)
    blocks: list[ClientBlock] = []
    uses: list[GrantUse] = []
    if isinstance(data, dict) and "heartbeats" in data:
        batch = validate(HeartbeatBatch, data)
        checked = check_entries(who, batch.heartbeats)
        entries, addresses = checked.entries, checked.addresses
        blocks = writable_blocks(who, batch.blocks)
        uses = batch.grants
    else:
        entries = [validate(HeartbeatEntry, data)]
        addresses = resolve_agents(who, entries, "")
        checked = None
    now = gw.clock.now()
    if entries or blocks or uses:
        result = await run_in_threadpool(ingest, gw.engine, who, entries, addresses, now, blocks, uses)
        gw.dispatcher.submit(result.alerts)
        if checked is None and result.refused:  # a single entry is refused as a whole (a batch: entry by entry)
            raise rate_error(next(iter(result.refused.values())))
        results, statuses = result.results, result.statuses
    else:
        results, statuses = [], {}
    if checked is not None:
        results = checked.answer(results)
    body: dict[str, Any] = {"results": results, "agents": {a: s.to_wire(money_only=True) for a, s in statuses.items()},
                            "pricing_version": (await snapshot(gw.prices)).version}  # clients refetch /v1/prices on change
    if uses:
        body["grants"] = result.grants
    for r in results:
        gw.metrics.entries.labels(r["status"]).inc()
    gw.metrics.note_states({s.address_id: s.state for s in statuses.values()})
    gw.metrics.ingest_seconds.observe(time.perf_counter() - started)
    listed = list(statuses.values())
    if listed and all(s.state != "active" for s in listed):
        err = block_error(listed[0], now)
        gw.metrics.rejects.labels(err.code).inc()
        return JSONResponse({**body, **err.body()}, status_code=err.status, headers=err.headers)
    return JSONResponse(body)
