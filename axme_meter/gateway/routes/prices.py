"""``/v1/prices``: the gateway's effective price table (any key reads it) and loading price files (super-admin).

``GET`` answers the table's files with ``ETag: "<pricing_version>"``; ``If-None-Match`` with that
version answers ``304`` (no body), so a client checking whether its copy is current costs one
small request. Heartbeat answers carry the same ``pricing_version``: a client fetches again only
when it changes.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import _commands
from .._prices import GatewayPrices, Snapshot
from .._schemas import PriceFileUpload
from ._common import gateway, principal, read_json, validate

#: Clients may keep the table but must ask (cheaply, with If-None-Match) before trusting it again.
_CACHE = "no-cache"


async def snapshot(prices: GatewayPrices) -> Snapshot:
    """The table to announce: cached for a second, else read from the database off the event loop."""
    return prices.fresh() or await run_in_threadpool(prices.current)


def _etag(version: str) -> str:
    return f'"{version}"'


def not_modified(header: str | None, version: str) -> bool:
    """``If-None-Match`` (a list of entity tags, weak or strong, or ``*``) names this version."""
    if not header:
        return False
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/").strip('"') == version:
            return True
    return False


async def get_prices(request: Request) -> Response:
    """``GET /v1/prices``: the bundled files and the loaded ones over them, and their ``pricing_version``."""
    gw = gateway(request)
    principal(request)  # any valid key may read the table
    current = await run_in_threadpool(gw.prices.latest)
    headers = {"ETag": _etag(current.version), "Cache-Control": _CACHE}
    if not_modified(request.headers.get("if-none-match"), current.version):
        return Response(status_code=304, headers=headers)
    return Response(current.body(), media_type="application/json", headers=headers)


async def load_prices(request: Request) -> JSONResponse:
    """``POST /v1/prices`` ``{"name", "toml"}``: load (or replace) a price file; 422 names the model and field."""
    gw = gateway(request)
    who = principal(request)
    body = validate(PriceFileUpload, await read_json(request))
    answer = await run_in_threadpool(_commands.load_prices, gw.engine, who, body.name, body.toml, gw.clock.now())
    gw.prices.invalidate()  # announce the new version from this replica at once
    return JSONResponse(answer, status_code=200 if answer["replaced"] else 201, headers={"ETag": _etag(answer["pricing_version"])})


async def unload_prices(request: Request) -> JSONResponse:
    """``DELETE /v1/prices/{name}``: drop a loaded file."""
    gw = gateway(request)
    who = principal(request)
    answer = await run_in_threadpool(_commands.unload_prices, gw.engine, who, request.path_params["name"], gw.clock.now())
    gw.prices.invalidate()
    return JSONResponse(answer, headers={"ETag": _etag(answer["pricing_version"])})
