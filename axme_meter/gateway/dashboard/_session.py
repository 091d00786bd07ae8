"""Dashboard sessions (server-side) and CSRF tokens.

Logging in stores a session row (``_db.sessions``): the sha256 of a random session
id, the digest of the API key used, and an expiry. The browser's cookie is signed
(itsdangerous) and holds that id plus a random nonce, never the key. Every request
looks the row up joined with the key, so logging out (the row is deleted) or
revoking the key (its rows and the key row are deleted) ends the session at once on
every replica, however long the cookie would still be valid.

The CSRF token is an HMAC of the nonce, so it is tied to the session and a forged
form from another site (which cannot read the cookie) cannot produce it. The signing
secret comes from ``AXME_GATEWAY_SESSION_SECRET`` (set it when several replicas serve
the dashboard); otherwise a random per-process secret is used, which only means
sessions end when the process restarts.

The cookie is ``Secure`` whenever the request came over https; behind a TLS proxy,
start the gateway with ``--proxy-headers`` so ``X-Forwarded-Proto`` is believed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Engine, select
from starlette.requests import Request
from starlette.responses import Response

from .._auth import Principal
from .._db import api_keys, sessions, write_conn

COOKIE = "axme_dashboard"
MAX_AGE = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    #: the server-side session id once logged in (its sha256 is the row's key)
    sid: str | None


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class Sessions:
    """Reads and writes the signed session cookie; computes and checks CSRF tokens."""

    def __init__(self, secret: str | None = None) -> None:
        self._secret = (secret or os.environ.get("AXME_GATEWAY_SESSION_SECRET") or secrets.token_hex(32)).encode()
        self._serializer = URLSafeTimedSerializer(self._secret, salt="axme-dashboard-session")

    def load(self, request: Request) -> Session | None:
        raw = request.cookies.get(COOKIE)
        if not raw or len(raw) > 4096:
            return None
        try:
            data = self._serializer.loads(raw, max_age=MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("n"), str):
            return None
        sid = data.get("s")
        return Session(data["n"], sid if isinstance(sid, str) else None)

    def new(self, sid: str | None = None) -> Session:
        """A fresh nonce on every login/logout, so a token seen before login is useless after it."""
        return Session(secrets.token_urlsafe(18), sid)

    def save(self, response: Response, session: Session, *, secure: bool = False) -> None:
        value = self._serializer.dumps({"n": session.nonce, "s": session.sid})
        response.set_cookie(COOKIE, value, max_age=MAX_AGE, httponly=True, samesite="lax", secure=secure, path="/dashboard")

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._secret, b"csrf:" + session.nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        if session is None or not token:
            return False
        return hmac.compare_digest(self.csrf_token(session), token)


def is_https(request: Request) -> bool:
    """The scheme the browser used (uvicorn rewrites it from X-Forwarded-Proto with ``--proxy-headers``)."""
    return request.url.scheme == "https"


def open_session(engine: Engine, key_hash: str) -> str:
    """Store a new session for the key with this digest; returns its id (for the cookie). Drops expired rows."""
    sid = secrets.token_urlsafe(32)
    now = int(time.time())
    with write_conn(engine) as conn, conn.begin():
        conn.execute(sessions.delete().where(sessions.c.expires_at < now))
        conn.execute(sessions.insert().values(id_hash=_digest(sid), key_hash=key_hash, created_at=now, expires_at=now + MAX_AGE))
    return sid


def close_session(engine: Engine, sid: str) -> None:
    with write_conn(engine) as conn, conn.begin():
        conn.execute(sessions.delete().where(sessions.c.id_hash == _digest(sid)))


def principal_of(engine: Engine, sid: str) -> Principal | None:
    """The key behind a live session, looked up per request (so logout and revocation end it at once)."""
    query = (select(api_keys).join(sessions, sessions.c.key_hash == api_keys.c.key_hash)
             .where(sessions.c.id_hash == _digest(sid), sessions.c.expires_at >= int(time.time())))
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return Principal(row["org"], bool(row["is_admin"]), row["agent"], row["prefix"]) if row else None
