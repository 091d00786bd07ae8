"""Signed approval tokens: the single-use approve/deny links in emails and the values of Slack buttons.

A token is ``<claims>.<signature>``: base64url JSON claims (approval id, org, decision, channel,
recipient, expiry) and an HMAC-SHA256 over them with the gateway's approval secret. The secret is
``AXME_GATEWAY_APPROVAL_SECRET`` when set, otherwise a random one created at the first start and kept in
``axme_gateway_secrets`` (schema 6), so every replica on one database signs and verifies alike.

A token cannot be changed (another approval, org or decision breaks the signature), expires with the
request's window (at most ``MAX_LINK_SECONDS`` after it was sent), and is single-use because the approval
it names can be decided only once (``_approvals.decide``): after that every token for it is a 409.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from ._db import gateway_secrets
from ._errors import ApiError

#: A link is valid at most this long (and never past the end of the request's window).
MAX_LINK_SECONDS = 24 * 3600
_SECRET_NAME = "approval_signing"
_CONTEXT = b"axme-approval-v1."


@dataclass(frozen=True, slots=True)
class Claims:
    approval_id: str
    org: str
    decision: str  # approve | deny
    channel: str  # email | slack
    to: str  # the email address (or the Slack target's label) it was sent to
    expires: int


def load_secret(engine: Engine, configured: str | None, now: int) -> bytes:
    """The signing secret: the configured one, else the database's (created here by the first replica)."""
    if configured:
        return configured.encode()
    from ._store import _insert  # the dialect-specific INSERT … ON CONFLICT

    with engine.begin() as conn:
        conn.execute(_insert(conn, gateway_secrets).values(name=_SECRET_NAME, value=secrets.token_hex(32), created_at=now)
                     .on_conflict_do_nothing(index_elements=["name"]))
        value = conn.execute(select(gateway_secrets.c.value).where(gateway_secrets.c.name == _SECRET_NAME)).scalar_one()
    return str(value).encode()


def _same(expected: str, given: str) -> bool:
    """Constant-time comparison that also takes non-ASCII input (``compare_digest`` refuses non-ASCII ``str``)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogatepass"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ApprovalSigner:
    """Makes and checks tokens, and turns them into links under the gateway's public URL."""

    def __init__(self, secret: bytes, public_url: str) -> None:
        self._secret = secret
        self.public_url = public_url.rstrip("/")

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._secret, _CONTEXT + body.encode("ascii"), hashlib.sha256).digest())

    def token(self, claims: Claims) -> str:
        body = _b64(json.dumps({"a": claims.approval_id, "o": claims.org, "d": claims.decision, "c": claims.channel,
                                "t": claims.to, "e": claims.expires}, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def link(self, token: str) -> str:
        return f"{self.public_url}/v1/approvals/links/{token}"

    def verify(self, token: str, now: int, channel: str) -> Claims:
        """The claims of a genuine, unexpired token for ``channel``; a 403 (forged) or 410 (expired) otherwise."""
        body, _, signature = token.partition(".")
        if not body or not signature or len(token) > 2000 or not _same(self._sign_safe(body), signature):
            raise ApiError(403, "invalid_token", "this approval link or button is not one the gateway signed "
                           "(altered, truncated or from another gateway); nothing was changed", {"field": "token"})
        data: dict[str, Any] = json.loads(_unb64(body))
        claims = Claims(str(data["a"]), str(data["o"]), str(data["d"]), str(data["c"]), str(data.get("t", "")), int(data["e"]))
        if claims.channel != channel or claims.decision not in ("approve", "deny"):
            raise ApiError(403, "invalid_token", f"this token is for {claims.channel}, not {channel}; nothing was changed",
                           {"field": "token"})
        if now >= claims.expires:
            raise ApiError(410, "link_expired", "this approval link has expired; decide in the dashboard or with "
                           "'axme-meter approvals'. Nothing was changed", {"field": "token", "approval_id": claims.approval_id})
        return claims

    def _sign_safe(self, body: str) -> str:
        try:
            return self._sign(body)
        except UnicodeEncodeError:
            return ""
