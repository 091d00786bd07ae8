"""Alert delivery: email (SMTP), Slack incoming webhook, generic JSON webhook.

Alerts are claimed inside the ingest transaction (one unique row per agent ×
policy × window × threshold, see ``_store.claim_alert``), so exactly one replica
owns each. The owner hands them to :class:`Dispatcher` after commit; a daemon
thread delivers them with retries and exponential backoff and records
``alert.sent`` / ``alert.failed`` events. Ingest never waits for a channel.
"""

from __future__ import annotations

import json
import logging
import queue
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("axme_meter.gateway.alerts")


@dataclass(slots=True)
class Alert:
    org: str
    address_id: str
    agent: str
    policy: str
    threshold: str
    limit: str
    spent: str
    resets_at: str | None
    notify: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        pct = f"{float(self.threshold) * 100:g}%"
        return (f"[axme-meter] {self.agent} reached {pct} of {self.policy}: spent ${self.spent} of ${self.limit}"
                + (f" (resets {self.resets_at})" if self.resets_at else ""))

    def payload(self) -> dict[str, Any]:
        return {"type": "budget.alert", "agent": self.agent, "address_id": self.address_id, "policy": self.policy,
                "threshold": self.threshold, "limit": self.limit, "spent": self.spent, "resets_at": self.resets_at,
                "message": self.text()}


Channel = tuple[str, str]  # (kind, target)
Recorder = Callable[[Alert, str, str, dict[str, Any]], None]  # alert, event type, channel, data


def channels(alert: Alert) -> list[Channel]:
    notify = alert.notify or {}
    out: list[Channel] = [("email", addr) for addr in notify.get("email") or []]
    if notify.get("slack_webhook"):
        out.append(("slack", notify["slack_webhook"]))
    if notify.get("webhook"):
        out.append(("webhook", notify["webhook"]))
    return out


class Dispatcher:
    """Background delivery with retries; ``record`` writes the outcome as an event."""

    def __init__(self, record: Recorder, *, smtp_url: str | None, smtp_from: str, retries: int = 4,
                 backoff: float = 0.5, on_result: Callable[[str, str], None] | None = None) -> None:
        self._record = record
        self._smtp_url = smtp_url
        self._smtp_from = smtp_from
        self._retries = retries
        self._backoff = backoff
        self._on_result = on_result
        self._queue: queue.Queue[tuple[Alert, Channel] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None

    def submit(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            for channel in channels(alert):
                self._queue.put((alert, channel))
        if alerts and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="axme-gateway-alerts", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._deliver(*item)

    def _deliver(self, alert: Alert, channel: Channel) -> None:
        kind, target = channel
        error = ""
        for attempt in range(self._retries):
            try:
                self._send(kind, target, alert)
            except Exception as exc:  # any channel failure is recorded, never raised into ingest
                error = f"{type(exc).__name__}: {exc}"[:500]
                if attempt + 1 < self._retries:
                    time.sleep(self._backoff * 2**attempt)
                continue
            self._outcome(alert, "alert.sent", kind, target, {"attempts": attempt + 1})
            return
        self._outcome(alert, "alert.failed", kind, target, {"attempts": self._retries, "error": error})

    def _outcome(self, alert: Alert, type_: str, kind: str, target: str, extra: dict[str, Any]) -> None:
        shown = target if kind == "email" else urlsplit(target).netloc  # webhook URLs carry secrets
        try:
            self._record(alert, type_, kind, {"channel": kind, "target": shown, "policy": alert.policy,
                                              "threshold": alert.threshold, **extra})
        except Exception:  # pragma: no cover - the database may be gone at shutdown
            log.exception("could not record %s", type_)
        if self._on_result:
            self._on_result(kind, "sent" if type_ == "alert.sent" else "failed")

    def _send(self, kind: str, target: str, alert: Alert) -> None:
        if kind == "email":
            self._send_email(target, alert)
            return
        if self._http is None:
            self._http = httpx.Client(timeout=5.0)
        body = {"text": alert.text()} if kind == "slack" else alert.payload()
        resp = self._http.post(target, content=json.dumps(body), headers={"content-type": "application/json"})
        resp.raise_for_status()

    def _send_email(self, to: str, alert: Alert) -> None:
        parts = urlsplit(self._smtp_url or "smtp://127.0.0.1:25")
        msg = EmailMessage()
        msg["From"] = self._smtp_from
        msg["To"] = to
        msg["Subject"] = alert.text()
        msg.set_content(json.dumps(alert.payload(), indent=2))
        smtp_cls = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
        with smtp_cls(parts.hostname or "127.0.0.1", parts.port or (465 if parts.scheme == "smtps" else 25), timeout=10) as smtp:
            if parts.username:
                smtp.login(parts.username, parts.password or "")
            smtp.send_message(msg)
