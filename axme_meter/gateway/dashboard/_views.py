"""HTTP handlers of ``/dashboard``: login/logout, overview, agent page, live fragments, forms.

Every handler resolves the session's key through the gateway's ``KeyRing`` on each
request (so a revoked key stops working at once) and reads with the caller's org
scope, exactly like the JSON API does with ``x-api-key``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from .._auth import Principal
from .._db import api_keys
from .._store import hash_key
from . import _actions, _chart, _data
from ._format import FILTERS
from ._session import Session, Sessions

if TYPE_CHECKING:
    from .._app import Gateway

_ENV = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")),
                   autoescape=select_autoescape(default=True, default_for_string=True), trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(FILTERS)
_ENV.filters["dumps"] = _actions.dumps
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}


def _gw(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


def _sessions(request: Request) -> Sessions:
    """One ``Sessions`` per app, created lazily so ``create_app`` needs no dashboard knowledge."""
    state = request.app.state
    if not hasattr(state, "dashboard_sessions"):
        state.dashboard_sessions = Sessions()
    return state.dashboard_sessions  # type: ignore[no-any-return]


def render(request: Request, name: str, session: Session | None, status: int = 200, **ctx: Any) -> HTMLResponse:
    csrf = _sessions(request).csrf_token(session) if session else ""
    html = _ENV.get_template(name).render(csrf=csrf, **ctx)
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _principal_by_hash(engine: Any, digest: str) -> Principal | None:
    """The key row behind a session, looked up per request so a deleted key ends the session at once."""
    with engine.connect() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.key_hash == digest)).mappings().first()
    return Principal(row["org"], bool(row["is_admin"]), row["agent"]) if row else None


async def _who(request: Request) -> tuple[Session | None, Principal | None]:
    session = _sessions(request).load(request)
    if session is None or session.key is None:
        return session, None
    principal = await run_in_threadpool(_principal_by_hash, _gw(request).engine, session.key)
    return session, principal


async def _read(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    gw = _gw(request)

    def run() -> Any:
        with gw.engine.connect() as conn:
            return fn(conn, *args)

    return await run_in_threadpool(run)


def _to_login() -> RedirectResponse:
    return RedirectResponse("/dashboard/login", status_code=303)


def _forbidden(message: str = "CSRF token missing or invalid") -> PlainTextResponse:
    return PlainTextResponse(message, status_code=403, headers=_HEADERS)


async def _checked_form(request: Request) -> tuple[FormData, Session | None, bool]:
    """The form plus whether its CSRF token matches this browser's session."""
    form = await request.form()
    session = _sessions(request).load(request)
    token = form.get("csrf")
    return form, session, _sessions(request).csrf_ok(session, token if isinstance(token, str) else None)


# -- login / logout -------------------------------------------------------------------------------

async def login_page(request: Request) -> Response:
    sessions = _sessions(request)
    session = sessions.load(request) or sessions.new()
    response = render(request, "login.html", session, error=None)
    sessions.save(response, session, secure=request.url.scheme == "https")
    return response


async def login(request: Request) -> Response:
    form, session, ok = await _checked_form(request)
    if not ok:
        return _forbidden()
    key = str(form.get("api_key") or "").strip()
    principal = await run_in_threadpool(_gw(request).keys.resolve, key) if key and len(key) <= 512 else None
    if principal is None:
        return render(request, "login.html", session, status=401, error="That API key is not known to this gateway.")
    sessions = _sessions(request)
    response = RedirectResponse("/dashboard", status_code=303)
    # the cookie holds the key's sha256 (as the database does), never the key itself
    sessions.save(response, sessions.new(hash_key(key)), secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    _form, _session, ok = await _checked_form(request)
    if not ok:
        return _forbidden()
    sessions = _sessions(request)
    response = _to_login()
    sessions.save(response, sessions.new(), secure=request.url.scheme == "https")
    return response


# -- overview --------------------------------------------------------------------------------------

def _filters(request: Request, who: Principal) -> tuple[str, str]:
    text = request.query_params.get("q", "")[:200]
    org = request.query_params.get("org", "")[:128] if who.org == "*" else ""
    return text, org


async def overview(request: Request) -> Response:
    session, who = await _who(request)
    if who is None:
        return _to_login()
    text, org = _filters(request, who)
    data = await _read(request, _data.overview, who.org, _gw(request).clock.now(), text, org)
    live = "/dashboard/live/overview?" + urlencode({"q": text, "org": org})
    return render(request, "overview.html", session, who=who, q=text, org=org, live=live, **data)


async def overview_fragment(request: Request) -> Response:
    _session, who = await _who(request)
    if who is None:
        return PlainTextResponse("log in again", status_code=401)
    text, org = _filters(request, who)
    data = await _read(request, _data.overview, who.org, _gw(request).clock.now(), text, org)
    return render(request, "_overview_rows.html", None, who=who, **data)


# -- agent page ------------------------------------------------------------------------------------

def _view(request: Request) -> str:
    view = request.query_params.get("view", "day")
    return view if view in _data.VIEWS else "day"


async def _agent_context(request: Request, who: Principal) -> dict[str, Any] | None:
    ref = request.path_params["address_id"]
    view = _view(request)
    intent = request.query_params.get("intent") or None
    page = await _read(request, _data.agent_page, who.org, ref, _gw(request).clock.now(), view, intent)
    if page is None:
        return None
    agent = page["agent"]
    page["chart"] = _chart.build(page["costs"]["series"], page["bucket"], agent["timezone"])
    params = {"view": view, **({"intent": intent} if intent else {})}
    page["live"] = f"/dashboard/live/agents/{agent['address_id']}?" + urlencode(params)
    page["who"] = who
    return page


async def agent(request: Request) -> Response:
    session, who = await _who(request)
    if who is None:
        return _to_login()
    page = await _agent_context(request, who)
    if page is None:
        return render(request, "not_found.html", session, status=404, who=who)
    saved = request.query_params.get("saved") == "1"
    return render(request, "agent.html", session, values=_actions.form_values(page["policy"]), errors={}, saved=saved, **page)


async def agent_fragment(request: Request) -> Response:
    _session, who = await _who(request)
    if who is None:
        return PlainTextResponse("log in again", status_code=401)
    page = await _agent_context(request, who)
    if page is None:
        return PlainTextResponse("not found", status_code=404)
    return render(request, "_agent_live.html", None, **page)


async def save_policy(request: Request) -> Response:
    form, session, ok = await _checked_form(request)
    if not ok:
        return _forbidden()
    _s, who = await _who(request)
    if who is None:
        return _to_login()
    if not who.is_admin:
        return _forbidden("changing a policy needs an admin key")
    ref = request.path_params["address_id"]
    errors, found = await run_in_threadpool(_actions.save_policy, _gw(request).engine, who.org, ref, form, _gw(request).clock.now())
    if not found:
        return PlainTextResponse("not found", status_code=404)
    page = await _agent_context(request, who)
    if page is None:
        return PlainTextResponse("not found", status_code=404)
    if errors:
        return render(request, "agent.html", session, status=422, values=_actions.form_values(None, form), errors=errors,
                      saved=False, **page)
    # Post/Redirect/Get: a reload after saving must not submit the form again
    return RedirectResponse(f"/dashboard/agents/{page['agent']['address_id']}?saved=1#policy", status_code=303)


async def change_state(request: Request) -> Response:
    form, _session, ok = await _checked_form(request)
    if not ok:
        return _forbidden()
    _s, who = await _who(request)
    if who is None:
        return _to_login()
    if not who.is_admin:
        return _forbidden("pausing, resuming or killing an agent needs an admin key")
    action = str(form.get("action") or "")
    if action not in _actions.TRANSITIONS:
        return PlainTextResponse("unknown action", status_code=400)
    ref = request.path_params["address_id"]
    if not await run_in_threadpool(_actions.change_state, _gw(request).engine, who.org, ref, action, _gw(request).clock.now()):
        return PlainTextResponse("not found", status_code=404)
    return RedirectResponse(f"/dashboard/agents/{ref}", status_code=303)
