"""Dashboard sessions and CSRF tokens.

The session is a signed (itsdangerous) cookie holding a random nonce and, once
logged in, the sha256 of the API key the user pasted (the same digest the keys
table stores, so the key itself never sits in a cookie); the key row is looked up
on every request, so deleting the key logs the browser out at once. The CSRF
token is an HMAC of the nonce, so it is tied to the session and a forged form
from another site (which cannot read the cookie) cannot produce it.

The signing secret comes from ``AXME_GATEWAY_SESSION_SECRET`` (set it when several
replicas serve the dashboard); otherwise a random per-process secret is used, which
only means sessions end when the process restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

COOKIE = "axme_dashboard"
MAX_AGE = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    key: str | None


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
        key = data.get("k")
        return Session(data["n"], key if isinstance(key, str) else None)

    def new(self, key: str | None = None) -> Session:
        """A fresh nonce on every login/logout, so a token seen before login is useless after it."""
        return Session(secrets.token_urlsafe(18), key)

    def save(self, response: Response, session: Session, *, secure: bool = False) -> None:
        value = self._serializer.dumps({"n": session.nonce, "k": session.key})
        response.set_cookie(COOKIE, value, max_age=MAX_AGE, httponly=True, samesite="lax", secure=secure, path="/dashboard")

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._secret, b"csrf:" + session.nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        if session is None or not token:
            return False
        return hmac.compare_digest(self.csrf_token(session), token)
