"""API keys and who may touch what.

A key has an org (``*`` for the bootstrap super-admin), an admin flag and an
optional bound agent. Org keys write and read only ``agent://<org>/…``; a
cross-org id answers 404 exactly like a missing one, so nothing leaks.
Keys are looked up by sha256 hash and cached in-process (keys are never
mutated, so the cache cannot go stale across replicas).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass

from sqlalchemy import Engine
from starlette.requests import Request

from . import _store
from ._errors import ApiError

KEY_PREFIX = "axme_sa_"


@dataclass(frozen=True, slots=True)
class Principal:
    org: str
    is_admin: bool
    agent: str | None

    def can_see_org(self, org: str) -> bool:
        return self.org == "*" or self.org == org

    def can_write_agent(self, address: str) -> bool:
        if self.agent is not None:
            return address == self.agent
        return self.can_see_org(_store.org_of(address))


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyRing:
    """Resolves ``x-api-key`` to a :class:`Principal`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._cache: dict[str, Principal] = {}
        self._lock = threading.Lock()

    def resolve(self, key: str) -> Principal | None:
        digest = _store.hash_key(key)
        found = self._cache.get(digest)
        if found is not None:
            return found
        with self._engine.connect() as conn:
            row = _store.find_key(conn, key)
        if row is None:
            return None
        principal = Principal(row["org"], bool(row["is_admin"]), row["agent"])
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = principal
        return principal

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
