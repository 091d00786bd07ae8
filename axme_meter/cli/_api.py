"""The small admin HTTP client the CLI, the demo and the benchmarks share.

:class:`GatewayAPI` resolves the gateway URL and key (flags, then ``AXME_GATEWAY_URL``
/ ``AXME_API_KEY``) and turns every failure into one readable :class:`GatewayError`,
whose message says what to do about it.
"""

from __future__ import annotations

import argparse
import os
from typing import Any
from urllib.parse import quote

import httpx


class GatewayError(Exception):
    """A gateway call failed; the message says what to do about it. ``status`` is the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def agent_path(agent: str) -> str:
    """``addr_…`` ids pass through; full ``agent://`` addresses are percent-encoded (the gateway accepts both)."""
    return quote(agent, safe="") if "://" in agent else quote(agent, safe="_-.")


class GatewayAPI:
    """Admin calls to an AXME-compatible gateway over httpx (sync)."""

    def __init__(self, url: str | None, api_key: str | None, *, timeout: float = 10.0) -> None:
        url = url or os.environ.get("AXME_GATEWAY_URL")
        api_key = api_key or os.environ.get("AXME_API_KEY")
        if not url:
            raise GatewayError("no gateway URL: pass --gateway URL or set AXME_GATEWAY_URL (e.g. http://127.0.0.1:8787)")
        if not api_key:
            raise GatewayError("no API key: pass --api-key KEY or set AXME_API_KEY (policies need an admin key)")
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers={"x-api-key": api_key}, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GatewayAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise GatewayError(f"cannot reach the gateway at {self.url}: {exc.__class__.__name__}: {exc}") from None
        if response.status_code >= 400:
            raise GatewayError(_describe_error(response), response.status_code)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise GatewayError(f"{method} {path}: the gateway answered {response.status_code} with non-JSON") from None

    def put_policy(self, agent: str, policy: dict[str, Any]) -> Any:
        return self.request("PUT", f"/v1/mesh/agents/{agent_path(agent)}/policies/cost", json=policy)

    def get_policy(self, agent: str) -> Any:
        return self.request("GET", f"/v1/mesh/agents/{agent_path(agent)}/policies/cost")

    def delete_policy(self, agent: str) -> Any:
        return self.request("DELETE", f"/v1/mesh/agents/{agent_path(agent)}/policies/cost")

    def agents(self, window: str = "day") -> list[dict[str, Any]]:
        body = self.request("GET", "/v1/mesh/agents", params={"window": window})
        return list(body.get("agents", [])) if isinstance(body, dict) else []

    def agent(self, agent: str) -> Any:
        return self.request("GET", f"/v1/mesh/agents/{agent_path(agent)}")

    def costs(self, agent: str, window: str = "day") -> Any:
        return self.request("GET", f"/v1/mesh/agents/{agent_path(agent)}/costs", params={"window": window})

    def events(self) -> Any:
        return self.request("GET", "/v1/mesh/events")


def _describe_error(response: httpx.Response) -> str:
    where = f"{response.request.method} {response.request.url.path}"
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        error = {}
    message = error.get("message") if isinstance(error, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    hint = {401: " (is the API key right?)", 403: " (policies need an admin key)", 404: " (unknown agent or path)"}
    text = f"{where}: HTTP {response.status_code}"
    if code:
        text += f" {code}"
    text += f": {message or response.text[:300] or response.reason_phrase}"
    return text + hint.get(response.status_code, "")


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", metavar="URL", help="gateway base URL (default: $AXME_GATEWAY_URL)")
    parser.add_argument("--api-key", metavar="KEY", help="gateway API key (default: $AXME_API_KEY)")
