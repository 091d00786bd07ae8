"""The HTTP edge to the AXME gateway: URL policy, auth header, timeouts, ``Retry-After``.

The client library is whichever of ``httpx`` / ``httpx2`` (same API) the process
has *already* imported, see :func:`http_module`. The API key goes only into the
``x-api-key`` header and is never part of a log line or error.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

CLIENT_NAME = "axme_meter/0.1.0"
#: Never wait longer than this for a server-requested ``Retry-After``.
RETRY_AFTER_CAP = 60.0


class InsecureGatewayURL(ValueError):
    """``http://`` to a host that is not loopback, without ``allow_insecure_http``."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_url(url: str, *, allow_insecure_http: bool) -> str:
    """Return the normalised base URL, or raise ``ValueError`` saying what is wrong and how to fix it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"gateway URL must look like https://host[:port], got {url!r}")
    if parts.username or parts.password:
        raise ValueError("gateway URL must not embed credentials; set AXME_API_KEY instead")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        raise InsecureGatewayURL(
            f"refusing plain http:// to non-loopback host {parts.hostname!r}: the API key would travel "
            "unencrypted. Use https://, or opt in with configure(allow_insecure_http=True)."
        )
    return url.rstrip("/")


class GatewayUnreachable(Exception):
    """Connection refused, DNS failure, timeout: the request may or may not have arrived."""


class Answer:
    """One HTTP answer: status, parsed JSON body (or None) and a capped ``Retry-After``."""

    __slots__ = ("status", "body", "retry_after")

    def __init__(self, status: int, body: Any, retry_after: float | None) -> None:
        self.status = status
        self.body = body
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        import email.utils

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (now if now is not None else time.time())
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, RETRY_AFTER_CAP))


def http_module() -> Any:
    """``httpx`` if already imported, else ``httpx2`` if already imported, else import ``httpx``.

    Why not always import ``httpx``: the first request runs on the sender thread, and
    openai 3.x looks ``httpx`` up in ``sys.modules`` on every request (to accept legacy
    httpx objects). Importing it there lets the caller's thread see a half-initialised
    module ("partially initialized module 'httpx' has no attribute 'Response'").
    openai 3.x has ``httpx2`` loaded and openai 2.x has ``httpx`` loaded, so in practice
    nothing new is imported; and tests that import ``httpx`` keep ``respx`` working.
    """
    import sys

    for name in ("httpx", "httpx2"):
        module = sys.modules.get(name)
        if module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False):
            return module
    import httpx

    return httpx


class GatewayHTTP:
    """A small JSON-over-HTTP client for ``/v1/mesh/*``. Thread-safe (``httpx.Client`` pools)."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 10.0) -> None:
        httpx = http_module()
        headers = {"X-Axme-Client": CLIENT_NAME, "accept": "application/json"}
        if api_key:
            headers["x-api-key"] = api_key
        self.base_url = base_url
        self._httpx = httpx
        self._client = httpx.Client(
            base_url=base_url, headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)), follow_redirects=False
        )

    def post(self, path: str, body: Any, *, timeout: float | None = None) -> Answer:
        """POST JSON; raise :class:`GatewayUnreachable` when there is no HTTP answer."""
        return self._request("POST", path, timeout, json=body)

    def get(self, path: str, *, headers: dict[str, str] | None = None, timeout: float | None = None) -> Answer:
        """GET (e.g. ``/v1/prices`` with ``If-None-Match``); raise :class:`GatewayUnreachable` when there is no answer."""
        return self._request("GET", path, timeout, headers=headers)

    def _request(self, method: str, path: str, timeout: float | None, **kwargs: Any) -> Answer:
        httpx = self._httpx
        if timeout is not None:
            timeout = max(timeout, 0.05)
            kwargs["timeout"] = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        try:
            resp = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            # Never include the request (headers carry the key) in what we raise.
            raise GatewayUnreachable(f"{type(exc).__name__} talking to {self.base_url}") from None
        try:
            parsed: Any = resp.json() if resp.content else None
        except ValueError:
            parsed = None
        return Answer(resp.status_code, parsed, parse_retry_after(resp.headers.get("retry-after")))

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # pragma: no cover - best effort at shutdown
            pass
