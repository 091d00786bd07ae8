"""API keys and who may touch what.

A key has an org (``*`` for the bootstrap super-admin), an admin flag and an
optional bound agent. Org keys write and read only ``agent://<org>/…``; a
cross-org id answers 404 exactly like a missing one, so nothing leaks.

A key's scope is its ceiling: a key bound to an agent acts (writes heartbeats,
changes policy or state) only on that agent even when it is an admin key, and
every key it creates or revokes must lie inside its own scope.

Keys are looked up by sha256 hash and cached in-process for at most
``KEY_CACHE_SECONDS``: a key revoked (or deleted from the table) on any replica is
refused by every replica within that time, at the price of one primary-key
lookup per key and replica every half second.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine
from starlette.requests import Request

from . import _store
from ._errors import ApiError

KEY_PREFIX = "axme_sa_"
#: How long a resolved key is trusted without asking the database again (revocation bound: < 1 s).
KEY_CACHE_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Principal:
    org: str
    is_admin: bool
    agent: str | None
    #: The key's prefix as ``keys list`` shows it; written as ``"by"`` into audit events.
    prefix: str = ""

    def can_see_org(self, org: str) -> bool:
        return self.org == "*" or self.org == org

    def can_write_agent(self, address: str) -> bool:
        if self.agent is not None:
            return address == self.agent
        return self.can_see_org(_store.org_of(address))

    def reads_secrets_of(self, address: str) -> bool:
        """Webhook URLs are read back only by org admins (admin keys not bound to one agent)."""
        return self.is_admin and self.agent is None and self.can_see_org(_store.org_of(address))

    def covers(self, org: str, agent: str | None) -> bool:
        """Whether a key of ``org`` bound to ``agent`` lies inside this key's scope (create / list / revoke)."""
        if not self.can_see_org(org):
            return False
        return self.agent is None or agent == self.agent


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyRing:
    """Resolves ``x-api-key`` to a :class:`Principal`, caching each answer for ``KEY_CACHE_SECONDS``."""

    def __init__(self, engine: Engine, ttl: float = KEY_CACHE_SECONDS) -> None:
        self._engine = engine
        self._ttl = ttl
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def resolve(self, key: str) -> Principal | None:
        digest = _store.hash_key(key)
        now = time.monotonic()
        found = self._cache.get(digest)
        if found is not None and now - found[0] < self._ttl:
            return found[1]
        with self._engine.connect() as conn:
            row = _store.find_key(conn, key)
        if row is None:
            self.forget(digest)
            return None
        principal = Principal(row["org"], bool(row["is_admin"]), row["agent"], row["prefix"])
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now, principal)
        return principal

    def forget(self, digest: str) -> None:
        """Drop a key from this process's cache at once (the revoking replica need not wait for the TTL)."""
        with self._lock:
            self._cache.pop(digest, None)

    def authenticate(self, request: Request) -> Principal:
        key = request.headers.get("x-api-key")
        if not key:
            raise ApiError(401, "unauthorized", "missing x-api-key header")
        if len(key) > 512:
            raise ApiError(401, "unauthorized", "invalid API key")
        principal = self.resolve(key)
        if principal is None:
            raise ApiError(401, "unauthorized", "invalid API key")
        return principal


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise ApiError(403, "forbidden", "this action needs an admin key")
