"""Gateway settings: one frozen object built from CLI flags and environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MAX_BODY_BYTES = 1024 * 1024


def default_db_url() -> str:
    """A SQLite file in the per-user data dir: zero configuration for the embedded gateway."""
    import platformdirs

    directory = Path(platformdirs.user_data_dir("axme_meter"))
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'gateway.sqlite3'}"


def unpriced_rates_from(value: str | None) -> tuple[int, int] | None:
    """``AXME_GATEWAY_UNPRICED_RATES="30/180"`` (USD per 1M input/output tokens) as pico-dollars per 1M tokens.

    ``None`` when unset: then the highest input and output rates of the gateway's *effective* price
    table (bundled plus loaded files, ``_prices.dearest_rates``) apply, so an unknown model is assumed
    to be as dear as the dearest known one, also after a price file was loaded."""
    from .._money import from_usd

    if not value:
        return None
    parts = value.split("/")
    try:
        rates = tuple(from_usd(p.strip(), field="AXME_GATEWAY_UNPRICED_RATES") for p in parts)
    except ValueError:
        rates = ()
    if len(rates) != 2 or min(rates) <= 0:
        raise ValueError(f"AXME_GATEWAY_UNPRICED_RATES must be 'INPUT/OUTPUT' in USD per 1M tokens, "
                         f"such as '30/180'; got {value!r}")
    return rates[0], rates[1]


@dataclass(frozen=True, slots=True)
class Settings:
    db_url: str
    admin_key: str | None = None
    clock_file: str | None = None
    smtp_url: str | None = None
    smtp_from: str = "axme-meter@localhost"
    max_body_bytes: int = MAX_BODY_BYTES
    alert_retries: int = 4
    alert_backoff: float = 0.5
    alert_timeout: float = 5.0
    #: ``AXME_GATEWAY_WEBHOOK_ALLOW``: host names / CIDRs webhooks may reach although they are not public
    webhook_allow: tuple[str, ...] = ()
    #: Conservative (input, output) rates in pico-dollars per 1M tokens for calls a client cannot price,
    #: unless an agent's policy sets its own; ``None``: the effective table's dearest. See :func:`unpriced_rates_from`.
    unpriced_rates: tuple[int, int] | None = None
    #: ``AXME_GATEWAY_PUBLIC_URL``: where people reach this gateway (the approval links in emails); the CLI
    #: defaults it to the address it listens on.
    public_url: str = "http://127.0.0.1:8787"
    #: ``AXME_GATEWAY_SLACK_SIGNING_SECRET``: the Slack app's signing secret; Slack callbacks are refused without it.
    slack_signing_secret: str | None = None
    #: ``AXME_GATEWAY_APPROVAL_SECRET``: signs approval links and buttons; default: one kept in the database.
    approval_secret: str | None = None
    #: ``AXME_GATEWAY_NEW_AGENTS_PER_MINUTE``: agents one org may create per rolling minute (0: unlimited), see ``_agent_quota``
    new_agents_per_minute: int = 600

    @classmethod
    def from_env(cls, db_url: str | None = None, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {
            "db_url": db_url or env.get("AXME_GATEWAY_DB") or default_db_url(),
            "admin_key": env.get("AXME_GATEWAY_ADMIN_KEY") or None,
            "clock_file": env.get("AXME_GATEWAY_CLOCK_FILE") or None,
            "smtp_url": env.get("AXME_GATEWAY_SMTP_URL") or None,
            "smtp_from": env.get("AXME_GATEWAY_SMTP_FROM") or "axme-meter@localhost",
            "slack_signing_secret": env.get("AXME_GATEWAY_SLACK_SIGNING_SECRET") or None,
            "approval_secret": env.get("AXME_GATEWAY_APPROVAL_SECRET") or None,
        }
        if env.get("AXME_GATEWAY_PUBLIC_URL"):
            values["public_url"] = env["AXME_GATEWAY_PUBLIC_URL"].rstrip("/")
        if env.get("AXME_GATEWAY_ALERT_RETRIES"):
            values["alert_retries"] = max(1, int(env["AXME_GATEWAY_ALERT_RETRIES"]))
        values["unpriced_rates"] = unpriced_rates_from(env.get("AXME_GATEWAY_UNPRICED_RATES"))
        if env.get("AXME_GATEWAY_ALERT_BACKOFF"):
            values["alert_backoff"] = max(0.0, float(env["AXME_GATEWAY_ALERT_BACKOFF"]))
        if env.get("AXME_GATEWAY_ALERT_TIMEOUT"):
            values["alert_timeout"] = max(0.1, float(env["AXME_GATEWAY_ALERT_TIMEOUT"]))
        from ._agent_quota import limit_from

        values["new_agents_per_minute"] = limit_from(env.get("AXME_GATEWAY_NEW_AGENTS_PER_MINUTE"))
        values["webhook_allow"] = tuple(p.strip() for p in env.get("AXME_GATEWAY_WEBHOOK_ALLOW", "").split(",") if p.strip())
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
