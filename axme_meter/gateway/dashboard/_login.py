"""Log in with an API key, log out. Both are CSRF-protected POSTs; the login form's token is tied
to a pre-login session that is replaced (new nonce) on success, so a token seen before login is useless after."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .._store import hash_key
from ._session import close_session, is_https, open_session
from ._web import checked_form, forbidden, gw, render, sessions, to_login


async def login_page(request: Request) -> Response:
    store = sessions(request)
    session = store.load(request) or store.new()
    response = render(request, "login.html", session, error=None)
    store.save(response, session, secure=is_https(request))
    return response


async def login(request: Request) -> Response:
    form, session, ok = await checked_form(request)
    if not ok:
        return forbidden()
    key = str(form.get("api_key") or "").strip()
    principal = await run_in_threadpool(gw(request).keys.resolve, key) if key and len(key) <= 512 else None
    if principal is None:
        return render(request, "login.html", session, status=401, error="That API key is not known to this gateway.")
    store = sessions(request)
    sid = await run_in_threadpool(open_session, gw(request).engine, hash_key(key))
    response = RedirectResponse("/dashboard", status_code=303)
    # the cookie holds a random session id (its row names the key's digest), never the key itself
    store.save(response, store.new(sid), secure=is_https(request))
    return response


async def logout(request: Request) -> Response:
    """Ends the session server-side: a copy of the cookie taken before logging out is useless afterwards."""
    _form, session, ok = await checked_form(request)
    if not ok:
        return forbidden()
    if session is not None and session.sid is not None:
        await run_in_threadpool(close_session, gw(request).engine, session.sid)
    store = sessions(request)
    response = to_login()
    store.save(response, store.new(), secure=is_https(request))
    return response
