"""Check a cost policy on the client exactly as the gateway will, before it is sent.

With the ``gateway`` extra installed the check *is* the gateway's own pydantic
``CostPolicy`` model, so the CLI and ``PUT …/policies/cost`` cannot disagree;
without it, :func:`_equivalent_checks` applies the same rules with the same words.
Errors name the command-line flag (``--max-cost-per-day``), not the JSON field,
and say what a valid value looks like.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

#: CLI flag (argparse dest) -> policy field, for the money limits (decimal strings on the wire).
MONEY_FLAGS = {
    "max_cost_per_hour": "max_cost_per_hour_usd",
    "max_cost_per_day": "max_cost_per_day_usd",
    "max_cost_per_month": "max_cost_per_month_usd",
    "max_cost_per_intent": "max_cost_per_intent_usd",
}
COUNT_FLAGS = {"max_intents_per_day": "max_intents_per_day", "max_intents_per_hour": "max_intents_per_hour",
               "max_identical_requests_per_hour": "max_identical_requests_per_hour"}
#: CLI flag -> policy field, for the conservative per-1M-token rates of calls the client cannot price
RATE_FLAGS = {"unpriced_input_per_1m": "unpriced_input_usd_per_1m", "unpriced_output_per_1m": "unpriced_output_usd_per_1m"}
#: CLI flag -> policy field: what an approval adds (``require_approval``), and the spend-rate alert's multiple
APPROVAL_FLAGS = {"approval_raise": "approval_raise_usd"}
SPEND_RATE_FLAGS = {"alert_on_spend_rate": "alert_on_spend_rate_multiple"}
LIMIT_FIELDS = (*MONEY_FLAGS.values(), *COUNT_FLAGS.values())
#: the gateway's ``MAX_SPEND_RATE_MULTIPLE``
MAX_SPEND_RATE_MULTIPLE = Decimal(1000)
#: ``alert`` is AXME's spelling of ``notify``; the gateway stores it as ``notify``
ACTIONS = ("block", "notify", "alert", "pause", "kill", "require_approval")
UNPRICED = ("estimate", "refuse")

#: the gateway's limits (``axme_meter/gateway/_schemas.py``), repeated for installs without the gateway extra
MAX_POLICY_USD = Decimal(10**9)
MAX_COUNT = 10**12
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
URL = re.compile(r"https?://")
EMAIL_HINT = "an email address such as ops@example.com"
WEBHOOK_HINT = "an http:// or https:// URL such as https://hooks.example.com/axme"

_FIELD_FLAGS = {
    **{field: "--" + dest.replace("_", "-") for dest, field in {**MONEY_FLAGS, **COUNT_FLAGS, **RATE_FLAGS, **APPROVAL_FLAGS,
                                                                **SPEND_RATE_FLAGS}.items()},
    "action_on_breach": "--action", "on_unpriced_call": "--on-unpriced-call", "timezone": "--timezone", "alert_thresholds": "--alert-thresholds",
    "notify.email": "--notify-email", "notify.slack_webhook": "--notify-slack", "notify.webhook": "--notify-webhook",
}


def flag_of(field: str) -> str:
    """``notify.email.0`` -> ``--notify-email``; unknown fields keep their JSON name."""
    parts = [p for p in field.split(".") if not p.isdigit()]
    return _FIELD_FLAGS.get(".".join(parts), ".".join(parts) or "policy")


def no_limit_message() -> str:
    flags = ", ".join(_FIELD_FLAGS[f] for f in LIMIT_FIELDS)
    return f"set at least one limit: {flags} (e.g. --max-cost-per-day 50)"


def check_policy(body: dict[str, Any]) -> str | None:
    """``None`` if the gateway will accept ``body`` as a cost policy, else one line naming the flag and the fix."""
    try:
        from ..gateway._schemas import CostPolicy
    except ModuleNotFoundError:  # no gateway extra: the same rules, written out
        return _equivalent_checks(body)
    from pydantic import ValidationError

    try:
        CostPolicy.model_validate(body)
    except ValidationError as exc:
        return _describe(exc.errors(include_url=False, include_input=False)[0])
    return None


def _describe(error: Any) -> str:
    field = ".".join(str(p) for p in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if not field and message.startswith("set at least one limit"):
        return no_limit_message()
    if error["type"] == "string_pattern_mismatch":  # the schema's regex means nothing to a user
        message = f"must be {EMAIL_HINT if field.startswith('notify.email') else WEBHOOK_HINT}"
    return f"{flag_of(field)}: {message}"


def _equivalent_checks(body: dict[str, Any]) -> str | None:
    """The checks of the gateway's ``CostPolicy`` for installs without pydantic's model of it."""
    for field in (*MONEY_FLAGS.values(), *RATE_FLAGS.values(), *APPROVAL_FLAGS.values()):
        if body.get(field) is not None:
            problem = _money_problem(body[field])
            if problem:
                return f"{flag_of(field)}: {problem}"
    for field in COUNT_FLAGS.values():
        value = body.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT):
            return f"{flag_of(field)}: must be a whole number from 1 to {MAX_COUNT}"
    if body.get("action_on_breach", "block") not in ACTIONS:
        return f"--action: must be one of {', '.join(ACTIONS)}"
    if body.get("on_unpriced_call", "estimate") not in UNPRICED:
        return f"--on-unpriced-call: must be one of {', '.join(UNPRICED)}"
    problem = _timezone_problem(body.get("timezone", "UTC"))
    if problem:
        return f"--timezone: {problem}"
    multiple = body.get("alert_on_spend_rate_multiple")
    if multiple is not None and _multiple_problem(multiple):
        return f"--alert-on-spend-rate: {_multiple_problem(multiple)}"
    thresholds = body.get("alert_thresholds", [])
    if len(thresholds) > 10 or any(not isinstance(t, (int, float)) or not 0 < t <= 1 for t in thresholds):
        return "--alert-thresholds: give at most 10 fractions greater than 0 and at most 1, e.g. 0.5,0.8,1.0"
    problem = _notify_problem(body.get("notify") or {})
    if problem:
        return problem
    if all(body.get(field) is None for field in LIMIT_FIELDS):
        return no_limit_message()
    return None


def _money_problem(value: Any) -> str | None:
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return f'must be a decimal number such as "0.03", got {value!r}'
    if not amount.is_finite():
        return "must be finite (NaN and infinity are refused)"
    if amount < 0:
        return "must not be negative"
    if amount == 0:
        return "must be greater than zero"
    if amount > MAX_POLICY_USD:
        return f"must be at most {MAX_POLICY_USD} USD"
    return None


def _multiple_problem(value: Any) -> str | None:
    try:
        multiple = Decimal(str(value).strip())
    except InvalidOperation:
        multiple = Decimal("NaN")
    if not multiple.is_finite() or not 1 < multiple <= MAX_SPEND_RATE_MULTIPLE:
        return (f"must be greater than 1 and at most {MAX_SPEND_RATE_MULTIPLE}, such as \"3\" (alert when the current "
                f"hour's projected spend exceeds 3 times the agent's usual hourly spend); got {value!r}")
    return None


def _timezone_problem(name: Any) -> str | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not name or name == "UTC":
        return None
    try:
        ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f"unknown IANA timezone {name!r} (for example 'Europe/Berlin' or 'UTC')"
    return None


def _notify_problem(notify: dict[str, Any]) -> str | None:
    emails = notify.get("email") or []
    if len(emails) > 20:
        return "--notify-email: at most 20 addresses"
    for email in emails:
        problem = email_problem(email)
        if problem:
            return f"--notify-email: {problem}"
    for field in ("slack_webhook", "webhook"):
        if notify.get(field) is not None:
            problem = url_problem(notify[field])
            if problem:
                return f"{flag_of('notify.' + field)}: {problem}"
    return None


def email_problem(value: str) -> str | None:
    if len(value) > 254 or not EMAIL.fullmatch(value):
        return f"{value!r} is not {EMAIL_HINT}"
    return None


def url_problem(value: str) -> str | None:
    if len(value) > 2000 or not URL.match(value):
        return f"{value!r} is not {WEBHOOK_HINT}"
    return None
