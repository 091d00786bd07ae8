"""Settings: environment first, ``axme_meter.configure(...)`` second.

Other modules read :data:`settings`. ``configure()`` applies changes to the
process runtime (``_runtime.py``: budget, sender) directly, and tells the
:func:`on_change` listeners (pricing reloads its table).

A bad environment variable does not fail ``import axme_meter`` (the gateway and
the CLI import the package too): it is kept in :data:`problems` and raised as one
:class:`~axme_meter.ConfigError` when the settings are first used (:func:`check`,
called when the runtime is installed), unless ``configure()`` replaced that setting.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from . import _attribution
from ._errors import ConfigError

FailMode = Literal["open", "closed"]
_SECONDS = "a number of seconds greater than 0, such as 30"
_BOOL = "one of 1, true, yes, 0, false, no (or unset)"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}

#: Setting name -> the environment problem found for it (raised by :func:`check`).
problems: dict[str, ConfigError] = {}


def _seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A positive number of seconds (or >= 0); ``ConfigError`` naming ``name`` otherwise."""
    expected = "a number of seconds >= 0" if allow_zero else _SECONDS
    if isinstance(value, bool):
        raise ConfigError(name, expected, value)
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(name, expected, value) from None
    if not (seconds >= 0 if allow_zero else seconds > 0) or seconds == float("inf"):
        raise ConfigError(name, expected, value)
    return seconds


def _env(field_name: str, variable: str, parse: Callable[[str], Any], default: Any) -> Any:
    """Parse one environment variable; a bad value is remembered for :func:`check` and the default used meanwhile."""
    raw = os.environ.get(variable)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ConfigError as exc:
        problems[field_name] = exc
    except ValueError:
        problems[field_name] = ConfigError(variable, "valid", raw)
    return default


def _env_bool(variable: str) -> Callable[[str], bool]:
    def parse(raw: str) -> bool:
        value = raw.strip().lower()
        if value not in _TRUE | _FALSE:
            raise ConfigError(variable, _BOOL, raw)
        return value in _TRUE

    return parse


def _env_agent(raw: str) -> str:
    try:
        return _attribution.validate_address(raw)
    except ValueError:
        raise ConfigError("AXME_AGENT", f"an agent address of the form {_attribution.ADDRESS_FORM!r} (or "
                          "'agent://org/name'), such as 'agent://myorg/production/research-agent'", raw) from None


def check() -> None:
    """Raise the first environment problem still in effect (``configure()`` clears the ones it overrides)."""
    for exc in problems.values():
        raise exc


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
        """Read the environment; bad values go to :data:`problems` (see :func:`check`), never raised here."""
        problems.clear()
        spool = os.environ.get("AXME_METER_SPOOL_DIR")
        prices = os.environ.get("AXME_METER_PRICES")
        return cls(
            api_key=os.environ.get("AXME_API_KEY") or None,
            gateway_url=os.environ.get("AXME_GATEWAY_URL") or None,
            agent=_env("agent", "AXME_AGENT", _env_agent, None),
            heartbeat_interval=_env("heartbeat_interval", "AXME_HEARTBEAT_INTERVAL",
                                    lambda raw: _seconds("AXME_HEARTBEAT_INTERVAL", raw), 30.0),
            spool_dir=Path(spool) if spool else None,
            prices=Path(prices) if prices else None,
            strict_pricing=_env("strict_pricing", "AXME_METER_STRICT_PRICING", _env_bool("AXME_METER_STRICT_PRICING"), False),
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
    if "heartbeat_interval" in changes:
        changes["heartbeat_interval"] = _seconds("heartbeat_interval", changes["heartbeat_interval"])
    if "fail_mode" in changes and changes["fail_mode"] not in ("open", "closed"):
        raise ConfigError("fail_mode", "'open' or 'closed'", changes["fail_mode"])
    for seconds_field in ("fail_after", "shutdown_timeout"):
        if seconds_field in changes:
            changes[seconds_field] = _seconds(seconds_field, changes[seconds_field], allow_zero=True)
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
        problems.pop(name, None)  # set in code: the environment's value no longer matters
    for listener in list(_listeners):
        listener(settings)
    from . import _runtime  # lazy: the runtime imports this module

    _runtime.default().apply(settings)
    return settings
