"""Plumbing every dashboard handler shares: templates, security headers, the session, the caller, reads.

The caller is resolved from the server-side session on every request (session row
joined with its key row), and reads run ``_queries`` with the caller's org scope,
exactly like the JSON API does for ``x-api-key``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse

from .._auth import Principal
from ._format import FILTERS
from ._session import Session, Sessions, principal_of

if TYPE_CHECKING:
    from .._app import Gateway

_ENV = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")),
                   autoescape=select_autoescape(default=True, default_for_string=True), trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(FILTERS)
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}


def gw(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


def sessions(request: Request) -> Sessions:
    """One ``Sessions`` per app, created lazily so ``create_app`` needs no dashboard knowledge."""
    state = request.app.state
    if not hasattr(state, "dashboard_sessions"):
        state.dashboard_sessions = Sessions()
    return state.dashboard_sessions  # type: ignore[no-any-return]


def render(request: Request, name: str, session: Session | None, status: int = 200, **ctx: Any) -> HTMLResponse:
    csrf = sessions(request).csrf_token(session) if session else ""
    html = _ENV.get_template(name).render(csrf=csrf, **ctx)
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


async def who_is(request: Request) -> tuple[Session | None, Principal | None]:
    session = sessions(request).load(request)
    if session is None or session.sid is None:
        return session, None
    principal = await run_in_threadpool(principal_of, gw(request).engine, session.sid)
    return session, principal


async def read(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    gateway = gw(request)

    def run() -> Any:
        with gateway.engine.connect() as conn:
            return fn(conn, *args)

    return await run_in_threadpool(run)


def to_login() -> RedirectResponse:
    return RedirectResponse("/dashboard/login", status_code=303)


def forbidden(message: str = "CSRF token missing or invalid") -> PlainTextResponse:
    return PlainTextResponse(message, status_code=403, headers=_HEADERS)


async def checked_form(request: Request) -> tuple[FormData, Session | None, bool]:
    """The form plus whether its CSRF token matches this browser's session."""
    form = await request.form()
    session = sessions(request).load(request)
    token = form.get("csrf")
    return form, session, sessions(request).csrf_ok(session, token if isinstance(token, str) else None)
