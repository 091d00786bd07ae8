"""``create_app(settings)``: engine, schema, keys, alerts, metrics and routes wired together.

The ``Gateway`` object on ``app.state.gateway`` holds the per-process services;
routes reach it through ``routes._common.gateway(request)``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute

from .._protocol import error_body
from . import _agent_quota, _store
from ._alerts import Alert, Dispatcher
from ._approval_tokens import ApprovalSigner, load_secret
from ._auth import KeyRing, new_key
from ._config import Settings
from ._db import make_engine, migrate
from ._egress import EgressPolicy
from ._errors import ApiError
from ._metrics import GatewayMetrics
from ._prices import GatewayPrices
from ._windows import Clock
from .routes import routes

log = logging.getLogger("axme_meter.gateway")
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]]


@dataclass
class Gateway:
    """One gateway's services and in-memory state; nothing of it is process-wide, so two apps in one
    process (in-process tests) never share a cache. (``_ingest._SQLITE_WRITER`` is still module-level.)"""

    settings: Settings
    engine: Engine
    clock: Clock
    keys: KeyRing
    dispatcher: Dispatcher
    metrics: GatewayMetrics
    #: The effective price table (bundled + loaded files), see ``_prices.py``.
    prices: GatewayPrices
    #: Alert claims this gateway has seen taken; its engine's connections carry it (``_store.CLAIMS_OPTION``).
    claims: _store.AlertClaims = field(default_factory=_store.AlertClaims)


def bootstrap_admin_key(engine: Engine, settings: Settings, clock: Clock) -> str | None:
    """Store ``AXME_GATEWAY_ADMIN_KEY`` (idempotent), or mint one on first start; returns a newly minted key."""
    ts = int(clock.now().timestamp())
    with engine.begin() as conn:
        if settings.admin_key:
            _store.insert_key(conn, settings.admin_key, "*", admin=True, agent=None, now=ts)
            return None
        if _store.has_admin_key(conn):
            return None
        key = new_key()
        _store.insert_key(conn, key, "*", admin=True, agent=None, now=ts)
        return key


def build_gateway(settings: Settings) -> Gateway:
    """Raises ``ValueError`` for a malformed setting (e.g. a bad CIDR in ``AXME_GATEWAY_WEBHOOK_ALLOW``)."""
    egress = EgressPolicy.parse(settings.webhook_allow)  # before touching the database: fail fast
    engine = make_engine(settings.db_url)
    migrate(engine)
    clock = Clock(settings.clock_file)
    minted = bootstrap_admin_key(engine, settings, clock)
    if minted:
        print(f"axme-meter gateway: created admin key (shown once, store it now): {minted}", file=sys.stderr, flush=True)
    metrics = GatewayMetrics()

    def record(alert: Alert, type_: str, _channel: str, data: dict[str, Any]) -> None:
        with engine.begin() as conn:
            _store.add_event(conn, alert.org, alert.address_id, type_, {"agent": alert.agent, **data}, int(clock.now().timestamp()))

    dispatcher = Dispatcher(record, smtp_url=settings.smtp_url, smtp_from=settings.smtp_from, retries=settings.alert_retries,
                            backoff=settings.alert_backoff, timeout=settings.alert_timeout,
                            egress=egress,
                            on_result=lambda ch, res: metrics.alerts.labels(ch, res).inc())
    dispatcher.approvals = ApprovalSigner(load_secret(engine, settings.approval_secret, int(clock.now().timestamp())),
                                          settings.public_url)
    claims = _store.AlertClaims()
    # the write paths (``_ingest``) claim alerts with a connection, not a Gateway: the engine hands it on
    engine.update_execution_options(**{_store.CLAIMS_OPTION: claims, _agent_quota.OPTION: settings.new_agents_per_minute})
    return Gateway(settings, engine, clock, KeyRing(engine), dispatcher, metrics, GatewayPrices(engine), claims)


def create_app(settings: Settings, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The ASGI app. ``extra_routes`` (e.g. the dashboard's ``Mount``) are added after the API routes and
    reach the shared services through ``request.app.state.gateway`` (a :class:`Gateway`)."""
    gateway = build_gateway(settings)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        gateway.dispatcher.close()
        gateway.engine.dispose()

    app = Starlette(routes=[*routes(), *extra_routes], lifespan=lifespan, exception_handlers={
        ApiError: _api_error, HTTPException: _http_error, OperationalError: _db_unavailable, Exception: _unexpected})
    app.state.gateway = gateway
    return _EncodedAgentPaths(app)  # type: ignore[return-value]


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    if exc.status >= 400:
        request.app.state.gateway.metrics.rejects.labels(exc.code).inc()
    return exc.response()


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _db_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """Database down or locked too long: 503 with Retry-After, so clients keep the spend and re-send it."""
    log.warning("database unavailable: %s", type(exc).__name__)
    return JSONResponse(error_body("unavailable", "the gateway's database is unavailable; retry later"), status_code=503,
                        headers={"Retry-After": "5"})


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return JSONResponse(error_body("internal", "internal error"), status_code=500)


class _EncodedAgentPaths:
    """Keep a percent-encoded ``agent://…`` path segment as ONE segment.

    Servers decode ``%2F`` before routing, which would split the address into
    several path parts; re-derive the path from ``raw_path`` for agent routes.
    """

    PREFIX = b"/v1/mesh/agents/"

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Callable[..., Awaitable[Any]], send: Callable[..., Awaitable[Any]]) -> None:
        raw = scope.get("raw_path")
        if scope["type"] == "http" and raw and raw.startswith(self.PREFIX):
            parts = raw.split(b"?", 1)[0][len(self.PREFIX):].split(b"/")
            try:
                first = quote(unquote(parts[0].decode("latin-1"), errors="strict"), safe="")
                rest = [unquote(p.decode("latin-1")) for p in parts[1:]]
            except UnicodeDecodeError:
                first, rest = None, []
            if first is not None:
                scope = dict(scope, path="/v1/mesh/agents/" + "/".join([first, *rest]))
        await self.app(scope, receive, send)
