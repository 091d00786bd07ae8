"""Log in with an API key, log out. Both are CSRF-protected POSTs; the login form's token is tied
to a pre-login session that is replaced (new nonce) on success, so a token seen before login is useless after."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .._store import hash_key
from ._web import checked_form, forbidden, gw, render, sessions, to_login

async def login_page(request: Request) -> Response:
    store = sessions(request)
    session = store.load(request) or store.new()
    response = render(request, "login.html", session, error=None)
    store.save(response, session, secure=request.url.scheme == "https")
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
    response = RedirectResponse("/dashboard", status_code=303)
    # the cookie holds the key's sha256 (as the database does), never the key itself
    store.save(response, store.new(hash_key(key)), secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    _form, _session, ok = await checked_form(request)
    if not ok:
        return forbidden()
    store = sessions(request)
    response = to_login()
    store.save(response, store.new(), secure=request.url.scheme == "https")
    return response
