"""How the demo looks at the two sides: the gateway (what it recorded) and this process's transport."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import axme_meter

from .. import _config, _runtime
from ..cli._policy import GatewayAPI, GatewayError
from ._view import GatewayView

_SETTINGS = ("gateway_url", "api_key", "heartbeat_interval", "spool_dir")


def gateway_view(api: GatewayAPI, agent: str) -> GatewayView:
    """``agent`` as ``GET /v1/mesh/agents`` lists it: today's cost and state."""
    try:
        agents = api.agents("day")
    except GatewayError:
        return GatewayView(state="unreachable")
    for entry in agents:
        if entry.get("address") == agent:
            spent = entry.get("cost_period", entry.get("cost_today"))
            return GatewayView(spent=Decimal(str(spent)) if spent is not None else None,
                               state=str(entry.get("state") or entry.get("health_status") or "unknown"))
    return GatewayView()


def gateway_spent(api: GatewayAPI, agent: str) -> Decimal | None:
    """``agent``'s spend today as the gateway recorded it (``/costs`` totals)."""
    try:
        costs = api.costs(agent, "day")
    except GatewayError:
        return gateway_view(api, agent).spent
    totals = costs.get("totals") if isinstance(costs, dict) else None
    if isinstance(totals, dict) and totals.get("cost_usd") is not None:
        return Decimal(str(totals["cost_usd"]))
    return gateway_view(api, agent).spent


def serves(url: str) -> bool:
    """Does the gateway serve ``url`` at all (anything but 404 / no answer)? Login pages count."""
    import httpx

    try:
        return httpx.get(url, timeout=5).status_code != 404
    except httpx.HTTPError:
        return False


def blocked_locally(agent: str) -> bool:
    """Has this process's transport blocked ``agent`` (gateway answer or refused grant, lease or local limit)?"""
    return agent in _runtime.default().blocked_agents()


def transport_state() -> str:
    status = axme_meter.transport_status()
    return ", ".join(f"{k}={status.get(k)}" for k in ("mode", "reason", "requests", "last_error") if k in status)


def flush() -> None:
    """Deliver what is still unsent, so the gateway's total is the final one."""
    axme_meter.flush(timeout=10)


def point_at(url: str, api_key: str, heartbeat_interval: float, spool: Path) -> dict[str, Any]:
    """Send this process's spend to the demo gateway; returns the settings to restore afterwards."""
    saved = {name: getattr(_config.settings, name) for name in _SETTINGS}
    axme_meter.configure(gateway_url=url, api_key=api_key, heartbeat_interval=heartbeat_interval, spool_dir=spool)
    return saved
