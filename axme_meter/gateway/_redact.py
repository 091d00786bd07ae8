"""Secrets in alert targets: Slack and webhook URLs carry their credential in the URL itself.

They are write-only for everyone except org admins (who read them back through
``GET …/policies/cost`` only). Every other place a URL could surface (agent detail,
``policy.updated`` events, ``alert.*`` events and their error text, the dashboard)
shows ``scheme://host[:port]/…`` plus the URL's last 4 characters: enough to tell
two hooks apart, not enough to call one. Redacting is idempotent, so redacting an
already redacted value (an old event, a form posted back) changes nothing.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

#: The ``notify`` fields whose values are secrets.
SECRET_FIELDS = ("slack_webhook", "webhook")
ELLIPSIS = "…"
_URL = re.compile(r"""https?://[^\s'"<>]+""", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``https://hooks.slack.com/services/T0/B0/abcdXYZ`` → ``https://hooks.slack.com/…dXYZ``.

    Only scheme, host and port are kept (never user:password); anything unparsable
    keeps nothing but its last 4 characters."""
    if ELLIPSIS in url:  # already redacted
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return ELLIPSIS + url[-4:]
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}/{ELLIPSIS}{url[-4:]}"


def redact_text(text: str) -> str:
    """Every URL inside free text (exception messages, for example) redacted."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def redact_notify(notify: Any) -> Any:
    """A policy's ``notify`` block with the secret URLs redacted (emails are shown as they are)."""
    if not isinstance(notify, dict):
        return notify
    out = dict(notify)
    for name in SECRET_FIELDS:
        if isinstance(out.get(name), str):
            out[name] = redact_url(out[name])
    return out


def redact_policy(policy: dict[str, Any] | None) -> dict[str, Any] | None:
    """A wire-form cost policy as non-admins see it."""
    if policy is None:
        return None
    return {**policy, "notify": redact_notify(policy.get("notify"))}


def redact_event(data: Any) -> Any:
    """An event's data as stored or shown: any ``policy.notify`` redacted, URLs in ``error``/``target`` too.

    Applied when events are written *and* when they are read, so rows written
    before redaction existed are covered as well."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    if isinstance(out.get("policy"), dict):
        out["policy"] = redact_policy(out["policy"])
    for name in ("error", "target"):
        if isinstance(out.get(name), str):
            out[name] = redact_text(out[name])
    return out


class RedactedValue(ValueError):
    """A redacted URL was written back, but it is not the redaction of the stored one."""

    def __init__(self, field: str) -> None:
        super().__init__(f"notify.{field}: this is a redacted URL; enter the full URL (or leave the shown value unchanged)")
        self.field = f"notify.{field}"


def keep_secrets(new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """A policy written back with a redacted URL (as GET or the dashboard form showed it) keeps the stored URL.

    ``new`` and ``old`` are storage-form policies. Raises :class:`RedactedValue` for a
    redacted value that matches no stored URL, so a redaction is never stored as a target."""
    old_notify = (old or {}).get("notify") or {}
    notify = dict(new.get("notify") or {})
    for name in SECRET_FIELDS:
        value, stored = notify.get(name), old_notify.get(name)
        if not isinstance(value, str) or ELLIPSIS not in value:
            continue
        if not (isinstance(stored, str) and value == redact_url(stored)):
            raise RedactedValue(name)
        notify[name] = stored
    return {**new, "notify": notify}
