"""``/healthz``, ``/metrics``, ``/openapi.json`` and ``POST /v1/keys`` (admin key management)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import _store
from ..._attribution import validate_address
from .._auth import new_key, require_admin
from .._errors import ApiError
from .._openapi import openapi_document
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


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    org: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$")]
    admin: bool = False
    agent: Annotated[str, Field(max_length=400)] | None = None


async def create_key(request: Request) -> JSONResponse:
    """Admins create keys: the super-admin for any org, an org admin for its own org only."""
    gw = gateway(request)
    who = principal(request)
    require_admin(who)
    body = validate(KeyCreate, await read_json(request))
    if not who.can_see_org(body.org):
        raise ApiError(403, "forbidden", "an org admin key may only create keys for its own org", {"field": "org"})
    if body.agent is not None:
        try:
            validate_address(body.agent)
        except ValueError as exc:
            raise ApiError(422, "validation_error", f"agent: {exc}", {"field": "agent"}) from None
        if _store.org_of(body.agent) != body.org:
            raise ApiError(422, "validation_error", "agent: must belong to the key's org", {"field": "agent"})
    key = new_key()
    ts = int(gw.clock.now().timestamp())

    def tx() -> None:
        with gw.engine.begin() as conn:
            _store.insert_key(conn, key, body.org, admin=body.admin, agent=body.agent, now=ts)

    await run_in_threadpool(tx)
    return JSONResponse({"ok": True, "key": key, "org": body.org, "admin": body.admin, "agent": body.agent}, status_code=201)


