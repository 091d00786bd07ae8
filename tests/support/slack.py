"""A local stand-in for Slack: receives the gateway's messages (an incoming webhook) and clicks their buttons.

    with SlackWorkspace(secret) as slack:
        policy["notify"]["slack_webhook"] = slack.webhook_url
        ...
        message = slack.wait_for_message()
        resp = slack.click(gw.url, message, "approve", user="U123", at=clock_epoch)

``click`` posts a ``block_actions`` interaction to ``/v1/slack/interactions`` exactly as Slack does
(form-encoded ``payload``, ``X-Slack-Request-Timestamp``, ``X-Slack-Signature`` = v0 HMAC-SHA256), so the
gateway's verification is exercised for real; ``sign=False`` / ``secret=`` / ``at=`` make bad requests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlencode

import httpx

from support.polling import wait_for
from support.receivers import HTTPReceiver

ACTION_IDS = {"approve": "axme_approve", "deny": "axme_deny"}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()


class SlackWorkspace:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._hooks = HTTPReceiver()

    @property
    def webhook_url(self) -> str:
        return self._hooks.url("/services/T000/B000/slack-hook")

    def messages(self) -> list[dict[str, Any]]:
        return list(self._hooks.posts("/services/T000/B000/slack-hook"))

    def wait_for_message(self, count: int = 1) -> dict[str, Any]:
        """The ``count``-th message with buttons (an approval request)."""
        def found() -> dict[str, Any] | None:
            with_buttons = [m for m in self.messages() if any(b.get("type") == "actions" for b in m.get("blocks", []))]
            return with_buttons[count - 1] if len(with_buttons) >= count else None

        return wait_for(found, f"Slack approval message #{count}")  # type: ignore[no-any-return]

    def posts(self, path: str) -> list[Any]:
        """Anything else the gateway posted to this server (e.g. a generic webhook at another path)."""
        return list(self._hooks.posts(path))

    def updates(self) -> list[dict[str, Any]]:
        """What the gateway posted to the interactions' ``response_url`` (the decided messages)."""
        return list(self._hooks.posts("/actions/T000/1/response"))

    @staticmethod
    def button(message: dict[str, Any], decision: str) -> dict[str, Any]:
        actions = next(b for b in message["blocks"] if b.get("type") == "actions")
        return next(e for e in actions["elements"] if e["action_id"] == ACTION_IDS[decision])

    def interaction(self, message: dict[str, Any], decision: str, user: str, value: str | None = None) -> bytes:
        button = self.button(message, decision)
        payload = {"type": "block_actions", "user": {"id": user, "username": user.lower()}, "team": {"id": "T000"},
                   "response_url": self._hooks.url("/actions/T000/1/response"),
                   "actions": [{"action_id": button["action_id"], "block_id": "b", "value": value or button["value"],
                                "type": "button", "action_ts": "1"}]}
        return urlencode({"payload": json.dumps(payload)}).encode()

    def click(self, gateway_url: str, message: dict[str, Any], decision: str, *, user: str, at: int,
              secret: str | None = None, body: bytes | None = None, value: str | None = None) -> httpx.Response:
        """POST the interaction, signed with ``secret`` (default: the right one) at epoch ``at``."""
        body = body if body is not None else self.interaction(message, decision, user, value)
        timestamp = str(at)
        headers = {"content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": timestamp,
                   "x-slack-signature": sign(secret or self.secret, timestamp, body)}
        return httpx.post(f"{gateway_url}/v1/slack/interactions", content=body, headers=headers, timeout=30)

    def __enter__(self) -> SlackWorkspace:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)
