"""Settings: environment first, ``axme_meter.configure(...)`` second.

Other modules read :data:`settings`. ``configure()`` applies changes to the
process runtime (``_runtime.py``: budget, sender) directly, and tells the
:func:`on_change` listeners (pricing reloads its table).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from . import _attribution

FailMode = Literal["open", "closed"]


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be greater than 0, got {raw!r}")
    return value


@dataclass
class Settings:
    api_key: str | None = None
    gateway_url: str | None = None
    agent: str | None = None
    heartbeat_interval: float = 30.0
    spool_dir: Path | None = None
    prices: Path | None = None
    #: Extra price entries given in code (same shape as one model entry of a price file).
    extra_prices: list[Mapping[str, Any]] = field(default_factory=list)
    strict_pricing: bool = False
    #: Azure deployment name -> model name, for pricing.
    azure_deployments: dict[str, str] = field(default_factory=dict)
    #: Fail-safe limits enforced in-process, e.g. {"max_cost_per_day_usd": Decimal("5")}.
    local_limits: dict[str, Decimal | str] = field(default_factory=dict)
    #: What to do when the gateway has been unreachable for longer than ``fail_after``.
    fail_mode: FailMode = "open"
    fail_after: float = 300.0
    allow_insecure_http: bool = False
    #: Upper bound in seconds for the final flush at exit / SIGTERM; leftovers stay in the spool.
    shutdown_timeout: float = 5.0

    @classmethod
    def from_env(cls) -> Settings:
        spool = os.environ.get("AXME_METER_SPOOL_DIR")
        prices = os.environ.get("AXME_METER_PRICES")
        return cls(
            api_key=os.environ.get("AXME_API_KEY") or None,
            gateway_url=os.environ.get("AXME_GATEWAY_URL") or None,
            agent=os.environ.get("AXME_AGENT") or None,
            heartbeat_interval=_env_float("AXME_HEARTBEAT_INTERVAL", 30.0),
            spool_dir=Path(spool) if spool else None,
            prices=Path(prices) if prices else None,
            strict_pricing=os.environ.get("AXME_METER_STRICT_PRICING", "").lower() in {"1", "true", "yes"},
        )


settings = Settings.from_env()
_listeners: list[Callable[[Settings], None]] = []


def on_change(listener: Callable[[Settings], None]) -> None:
    _listeners.append(listener)


def configure(**changes: Any) -> Settings:
    """Change settings in code. Accepts the fields of :class:`Settings`.

    Unknown names raise ``TypeError`` listing the valid ones. Returns the new settings.
    """
    valid = {f.name for f in fields(Settings)}
    unknown = sorted(set(changes) - valid)
    if unknown:
        raise TypeError(f"configure() got unknown setting(s) {unknown}; valid settings: {sorted(valid)}")
    if "agent" in changes:
        _attribution.set_default_agent(changes["agent"])
    if "heartbeat_interval" in changes and not float(changes["heartbeat_interval"]) > 0:
        raise ValueError(f"heartbeat_interval must be greater than 0, got {changes['heartbeat_interval']!r}")
    if "fail_mode" in changes and changes["fail_mode"] not in ("open", "closed"):
        raise ValueError(f"fail_mode must be 'open' or 'closed', got {changes['fail_mode']!r}")
    for seconds_field in ("fail_after", "shutdown_timeout"):
        if seconds_field in changes and not float(changes[seconds_field]) >= 0:
            raise ValueError(f"{seconds_field} must be a number of seconds >= 0, got {changes[seconds_field]!r}")
    if changes.get("gateway_url") is not None or "allow_insecure_http" in changes:
        from ._transport._gateway_http import validate_url

        url = changes.get("gateway_url", settings.gateway_url)
        if url:
            validate_url(url, allow_insecure_http=bool(changes.get("allow_insecure_http", settings.allow_insecure_http)))
    for path_field in ("spool_dir", "prices"):
        if changes.get(path_field) is not None:
            changes[path_field] = Path(changes[path_field])
    if "local_limits" in changes:
        from ._budget._limits import validate as validate_limits

        changes["local_limits"] = validate_limits(changes["local_limits"] or {})
    for name, value in changes.items():
        setattr(settings, name, value)
    for listener in list(_listeners):
        listener(settings)
    from . import _runtime  # lazy: the runtime imports this module

    _runtime.default().apply(settings)
    return settings
