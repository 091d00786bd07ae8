"""Slack interactivity: approval requests as messages with Approve / Deny buttons, and the callback's checks.

The message goes to the policy's ``notify.slack_webhook`` (an incoming webhook accepts Block Kit
buttons). Clicking a button makes Slack POST the interaction to the Slack app's *Request URL*, which must
be this gateway's ``/v1/slack/interactions``. That request is checked as Slack documents ("Verifying
requests from Slack"): ``X-Slack-Signature`` must be ``v0=`` + HMAC-SHA256 of ``v0:<timestamp>:<raw body>``
under the app's signing secret (``AXME_GATEWAY_SLACK_SIGNING_SECRET``), and ``X-Slack-Request-Timestamp``
within five minutes of the gateway's clock, so a captured request cannot be replayed later. The button's
value is itself a signed approval token (``_approval_tokens``), so a genuine Slack request still cannot
decide an approval of another org than the one the message was sent for.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from ._errors import ApiError

#: How far ``X-Slack-Request-Timestamp`` may be from the gateway's clock (Slack's recommendation).
MAX_SKEW_SECONDS = 300
ACTIONS = {"axme_approve": "approve", "axme_deny": "deny"}


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 signature of a request (also what tests sign their callbacks with)."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify(secret: str | None, headers: Any, body: bytes, now: int) -> None:
    """Refuse (4xx, machine-readable) unless the request carries a fresh, valid Slack v0 signature."""
    if not secret:
        raise ApiError(404, "slack_not_configured", "Slack callbacks are off on this gateway: set "
                       "AXME_GATEWAY_SLACK_SIGNING_SECRET to the Slack app's signing secret", {})
    timestamp = headers.get("x-slack-request-timestamp") or ""
    given = headers.get("x-slack-signature") or ""
    if not timestamp.isdigit() or not given:
        raise ApiError(401, "invalid_signature", "missing X-Slack-Signature or X-Slack-Request-Timestamp; "
                       "nothing was changed", {"field": "x-slack-signature"})
    if abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
        raise ApiError(401, "stale_request", f"X-Slack-Request-Timestamp is more than {MAX_SKEW_SECONDS} s from the "
                       "gateway's clock (a replayed or delayed request); nothing was changed",
                       {"field": "x-slack-request-timestamp"})
    if not hmac.compare_digest(signature(secret, timestamp, body).encode(), given.encode("utf-8", "surrogatepass")):
        raise ApiError(401, "invalid_signature", "X-Slack-Signature does not match the body under the signing secret; "
                       "nothing was changed", {"field": "x-slack-signature"})


@dataclass(frozen=True, slots=True)
class Interaction:
    decision: str  # approve | deny
    value: str  # the button's value: a signed approval token
    user: str  # the Slack user id who clicked
    response_url: str | None  # where Slack takes the replacement of the message (``None`` if absent or not https)


def parse_action(body: bytes) -> Interaction:
    """The click in a ``block_actions`` interaction (form field ``payload``)."""
    try:
        payload = json.loads(parse_qs(body.decode("utf-8"), strict_parsing=True)["payload"][0])
        action = payload["actions"][0]
        decision = ACTIONS[action["action_id"]]
        user = str(payload.get("user", {}).get("id") or "unknown")[:64]
        value = str(action["value"])
        response_url = payload.get("response_url")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise ApiError(400, "invalid_interaction", "expected a Slack block_actions payload from an axme-meter "
                       "Approve/Deny button; nothing was changed", {"field": "payload"}) from None
    url = response_url if isinstance(response_url, str) and response_url.startswith(("https://", "http://")) \
        and len(response_url) <= 2000 else None
    return Interaction(decision, value, user, url)


def decided_message(approval: dict[str, Any], user: str) -> dict[str, Any]:
    """What replaces the request in Slack once decided (posted to the interaction's ``response_url``)."""
    verb = "Approved" if approval["state"] == "approved" else "Denied"
    effect = (f"{approval['policy']} is ${approval['new_limit']} until {approval['resets_at']}; the agent is resumed"
              if approval["state"] == "approved" else "the agent stays paused")
    text = f"{verb} by <@{user}>: {approval['agent']} ({approval['id']}): {effect}."
    return {"replace_original": True, "text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f":white_check_mark: {text}"
                                                    if approval["state"] == "approved" else f":no_entry: {text}"}}]}


def message(summary: str, approval: dict[str, Any], approve_value: str, deny_value: str) -> dict[str, Any]:
    """The Slack message (Block Kit): what happened and two buttons carrying signed tokens."""
    fields = [f"*Agent*\n{approval['agent']}", f"*Policy*\n{approval['policy']}",
              f"*Spent*\n${approval['spent']} of ${approval['limit']}", f"*Proposed raise*\n+${approval['raise']} "
              f"until {approval['resets_at']}"]
    return {
        "text": f"[axme-meter] approval needed: {summary}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f":pause_button: *Approval needed* ({approval['id']})\n{summary}"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
            {"type": "actions", "block_id": f"axme_approval_{approval['id']}", "elements": [
                {"type": "button", "action_id": "axme_approve", "style": "primary", "value": approve_value,
                 "text": {"type": "plain_text", "text": "Approve"}},
                {"type": "button", "action_id": "axme_deny", "style": "danger", "value": deny_value,
                 "text": {"type": "plain_text", "text": "Deny"}},
            ]},
        ],
    }
