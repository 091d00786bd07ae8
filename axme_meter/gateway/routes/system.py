"""``/healthz``, ``/metrics``, ``/openapi.json`` and ``/v1/keys`` (admin key management: create, list, revoke)."""

from __future__ import annotations

from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import _commands
from .._auth import require_admin
from .._openapi import openapi_document
from .._schemas import KeyCreate
from ._common import gateway, principal, read_json, validate


async def healthz(request: Request) -> JSONResponse:
    gw = gateway(request)

    def ping() -> None:
        with gw.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    await run_in_threadpool(ping)
    return JSONResponse({"ok": True, "status": "ok"})


async def metrics(request: Request) -> Response:
    return Response(gateway(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())


async def create_key(request: Request) -> JSONResponse:
    """``POST /v1/keys``: admins create keys inside their own scope (see ``_commands.create_key``)."""
    gw = gateway(request)
    who = principal(request)
    require_admin(who)
    body = validate(KeyCreate, await read_json(request))
    answer = await run_in_threadpool(_commands.create_key, gw.engine, who, body.org, admin=body.admin, agent=body.agent,
                                     now=gw.clock.now())
    return JSONResponse(answer, status_code=201)


async def list_keys(request: Request) -> JSONResponse:
    """``GET /v1/keys``: prefixes, orgs, flags and bound agents of the keys this admin key covers."""
    gw = gateway(request)
    return JSONResponse(await run_in_threadpool(_commands.list_keys, gw.engine, principal(request)))


async def revoke_key(request: Request) -> JSONResponse:
    """``DELETE /v1/keys/{prefix}``: refused by every replica within a second, its dashboard sessions end now."""
    gw = gateway(request)
    who = principal(request)
    prefix = request.path_params["prefix"]
    answer, digest = await run_in_threadpool(_commands.revoke_key, gw.engine, who, prefix, gw.clock.now())
    gw.keys.forget(digest)
    return JSONResponse(answer)
