"""The dashboard's policy form: form fields to the API's JSON body, errors back to fields, saving.

Validation goes through the API's own ``CostPolicy`` model and ``validate`` helper,
so a form error says exactly what ``PUT …/policies/cost`` would say; the writes are
``gateway._commands`` (the same scope checks and audit events as the API). The form
shows webhook URLs redacted, as every read does; saving it unchanged keeps the
stored URLs (``_redact.keep_secrets``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from starlette.datastructures import FormData

from .. import _commands
from .._auth import Principal
from .._errors import ApiError
from .._schemas import COUNT_FIELDS, LIMIT_FIELDS, RATE_FIELDS, CostPolicy
from ..routes._common import validate

#: The menus, (value, label) as the API accepts them; AXME's ``alert`` is the API's spelling of ``notify``
#: (stored as ``notify``), so the menu offers it once.
CHOICES: dict[str, list[tuple[str, str]]] = {
    "action_on_breach": [("block", "block: refuse calls until the window resets"),
                         ("pause", "pause: until an admin resumes"),
                         ("require_approval", "require approval: pause until an admin approves"),
                         ("kill", "kill: stop until an admin resumes"),
                         ("notify", "notify (alert) only")],
    "on_unpriced_call": [("estimate", "estimate at conservative rates"), ("refuse", "refuse before sending")],
}
#: Optional fields the form shows as plain text (blank = unset).
EXTRA_FIELDS = ("approval_raise_usd", "alert_on_spend_rate_multiple")
SINGLE_FIELDS = ("action_on_breach", "on_unpriced_call", "timezone", *RATE_FIELDS, *EXTRA_FIELDS)
TEXT_FIELDS = (*SINGLE_FIELDS, "notify.slack_webhook", "notify.webhook")
LIST_FIELDS = ("alert_thresholds", "notify.email")
FORM_FIELDS = (*LIMIT_FIELDS, *TEXT_FIELDS, *LIST_FIELDS)


def _number(raw: str) -> Any:
    """Intent counts are strict ints in the API; a non-number is passed through so the API's message names it."""
    try:
        return int(raw)
    except ValueError:
        return raw


def _threshold(raw: str) -> Any:
    try:
        return float(raw)
    except ValueError:
        return raw


def policy_body(form: FormData) -> dict[str, Any]:
    """Form fields → the JSON body ``PUT …/policies/cost`` would receive (blank means unset)."""
    body: dict[str, Any] = {}
    notify: dict[str, Any] = {}
    for name in LIMIT_FIELDS:
        raw = str(form.get(name) or "").strip()
        if raw:
            body[name] = _number(raw) if name in COUNT_FIELDS else raw
    for name in SINGLE_FIELDS:
        raw = str(form.get(name) or "").strip()
        if raw:
            body[name] = raw
    thresholds = [t for t in str(form.get("alert_thresholds") or "").replace(";", ",").split(",") if t.strip()]
    body["alert_thresholds"] = [_threshold(t.strip()) for t in thresholds]
    emails = [e for e in str(form.get("notify.email") or "").replace(";", ",").replace(" ", ",").split(",") if e]
    if emails:
        notify["email"] = emails
    for name in ("slack_webhook", "webhook"):
        raw = str(form.get(f"notify.{name}") or "").strip()
        if raw:
            notify[name] = raw
    body["notify"] = notify
    return body


def form_errors(exc: ApiError) -> dict[str, str]:
    """``details.errors`` → {form field: message}; errors about the whole policy go under ``""``."""
    out: dict[str, str] = {}
    for err in exc.details.get("errors", []) or [{"field": exc.details.get("field", ""), "message": exc.message}]:
        parts = [p for p in str(err["field"]).split(".") if not p.isdigit()]
        field = ".".join(parts)
        if field not in FORM_FIELDS:
            field = ""
        out.setdefault(field, str(err["message"]))
    return out


def save_policy(engine: Engine, who: Principal, ref: str, form: FormData, now: datetime) -> dict[str, str]:
    """Validate and store (``_commands.set_policy``); returns errors by field, ``{}`` when saved.

    Refusals other than validation (403 outside the key's scope, 404) are raised as ``ApiError``."""
    try:
        _commands.set_policy(engine, who, ref, validate(CostPolicy, policy_body(form)), now)
    except ApiError as exc:
        if exc.status == 422:
            return form_errors(exc)
        raise
    return {}


def form_values(policy: dict[str, Any] | None, form: FormData | None = None) -> dict[str, str]:
    """What the editor's inputs show: the submitted text after an error, else the stored policy."""
    if form is not None:
        return {name: str(form.get(name) or "") for name in FORM_FIELDS}
    policy = policy or {}
    notify = policy.get("notify") or {}
    values = {name: "" if policy.get(name) is None else str(policy[name]) for name in LIMIT_FIELDS}
    values["action_on_breach"] = str(policy.get("action_on_breach") or "block")
    values["on_unpriced_call"] = str(policy.get("on_unpriced_call") or "estimate")
    for name in (*RATE_FIELDS, *EXTRA_FIELDS):
        values[name] = "" if policy.get(name) is None else str(policy[name])
    values["timezone"] = str(policy.get("timezone") or "UTC")
    values["alert_thresholds"] = ", ".join(str(t) for t in policy.get("alert_thresholds", [0.5, 0.8, 1.0]))
    values["notify.email"] = ", ".join(notify.get("email") or [])
    values["notify.slack_webhook"] = str(notify.get("slack_webhook") or "")
    values["notify.webhook"] = str(notify.get("webhook") or "")
    return values
