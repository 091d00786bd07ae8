"""Alert delivery: email (SMTP), Slack incoming webhook, generic JSON webhook.

Alerts are claimed inside the ingest transaction (one unique row per agent ×
policy × window × threshold, see ``_store.claim_alert``), so exactly one replica
owns each. The owner hands them to :class:`Dispatcher` after commit, which
delivers with retries and exponential backoff and records ``alert.sent`` /
``alert.failed`` events. Ingest never waits for a channel.

Each target (one email address, one Slack or webhook URL) has its own lane: a
daemon thread with its own queue, HTTP connection and per-attempt timeout, started
on demand and ended when idle. So a target that hangs or is down only delays its
own later alerts, never another target's or another org's. Webhook hosts are
checked by ``_egress`` before any connection, and every URL in a recorded target or
error text is redacted (``_redact``).
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

from .._protocol import parse_iso
from . import _slack
from ._approval_tokens import MAX_LINK_SECONDS, ApprovalSigner, Claims
from ._egress import EgressPolicy, RefusedTarget
from ._redact import redact_text, redact_url

log = logging.getLogger("axme_meter.gateway.alerts")


@dataclass(slots=True)
class Alert:
    """One notification. ``kind``: ``budget`` (a threshold of a limit), ``loop`` (identical requests passed
    ``max_identical_requests_per_hour``, see ``_loops``), ``spend_rate`` (an anomaly, see
    ``_spend_rate``) or ``approval`` (a request with Approve/Deny, see ``_approvals``); ``details`` is the
    kind's own JSON (the approval's wire form, the spend-rate figures)."""

    org: str
    address_id: str
    agent: str
    policy: str
    threshold: str
    limit: str
    spent: str
    resets_at: str | None
    notify: dict[str, Any] = field(default_factory=dict)
    kind: str = "budget"  # budget | loop | spend_rate | approval | slack_update (a decided request's Slack message)
    details: dict[str, Any] | None = None
    #: A text of its own (loop detection); else the kind's text below.
    message: str | None = None

    def text(self) -> str:
        if self.message is not None:
            return self.message
        if self.kind == "approval" and self.details:
            d = self.details
            return (f"[axme-meter] approval needed: {self.agent} is paused, {d['policy']} spent ${d['spent']} of "
                    f"${d['limit']}; approving raises it by ${d['raise']} until {d['resets_at']} ({d['id']})")
        if self.kind == "slack_update" and self.details:
            return str(self.details.get("text", ""))
        if self.kind == "spend_rate" and self.details:
            d = self.details
            return (f"[axme-meter] {self.agent} is spending fast: ${d['projected']} projected this hour, "
                    f"{d['ratio']}x its usual ${d['baseline']} per hour (alert above {d['multiple']}x)")
        pct = f"{float(self.threshold) * 100:g}%"
        return (f"[axme-meter] {self.agent} reached {pct} of {self.policy}: spent ${self.spent} of ${self.limit}"
                + (f" (resets {self.resets_at})" if self.resets_at else ""))

    def payload(self) -> dict[str, Any]:
        if self.kind == "approval":
            return {"type": "approval.requested", "agent": self.agent, "address_id": self.address_id,
                    "approval": self.details, "message": self.text()}
        if self.kind == "spend_rate":
            return {"type": "spend_rate.alert", "agent": self.agent, "address_id": self.address_id,
                    "policy": self.policy, **(self.details or {}), "message": self.text()}
        return {"type": "loop.alert" if self.kind == "loop" else "budget.alert", "agent": self.agent,
                "address_id": self.address_id, "policy": self.policy, "threshold": self.threshold, "limit": self.limit, "spent": self.spent, "resets_at": self.resets_at,
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


#: A lane with nothing to do for this long ends its thread (a new alert starts a new one).
LANE_IDLE_SECONDS = 30.0
#: At most this many targets are delivered to at once; the lanes of further targets wait for a free slot.
MAX_LANES = 256


class _Lane:
    """One target's queue and worker thread (and, for HTTP targets, its own client: one host per lane)."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Alert | None] = queue.Queue()
        self.http: httpx.Client | None = None
        self.thread: threading.Thread | None = None


class Dispatcher:
    """Background delivery, one lane per target, with retries; ``record`` writes the outcome as an event."""

    def __init__(self, record: Recorder, *, smtp_url: str | None, smtp_from: str, retries: int = 4,
                 backoff: float = 0.5, timeout: float = 5.0, egress: EgressPolicy | None = None,
                 on_result: Callable[[str, str], None] | None = None) -> None:
        self._record = record
        self._smtp_url = smtp_url
        self._smtp_from = smtp_from
        self._retries = retries
        self._backoff = backoff
        self._timeout = timeout
        self._egress = egress or EgressPolicy()
        self._on_result = on_result
        self._lanes: dict[Channel, _Lane] = {}
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_LANES)
        self._closed = threading.Event()
        #: Signs the Approve/Deny links and buttons of approval requests (set by ``build_gateway``).
        self.approvals: ApprovalSigner | None = None

    def submit(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            for channel in channels(alert):
                self._enqueue(channel, alert)

    def _enqueue(self, channel: Channel, alert: Alert) -> None:
        # under the lock, so a lane that is just deciding to end (also under the lock) cannot drop this item
        with self._lock:
            lane = self._lanes.get(channel)
            if lane is None:
                lane = self._lanes[channel] = _Lane()
                lane.thread = threading.Thread(target=self._run, args=(channel, lane), daemon=True,
                                               name=f"axme-gateway-alerts-{channel[0]}")
                lane.thread.start()
            lane.queue.put(alert)

    def close(self, timeout: float = 2.0) -> None:
        self._closed.set()
        with self._lock:
            lanes = list(self._lanes.values())
            for lane in lanes:
                lane.queue.put(None)
        deadline = time.monotonic() + timeout
        for lane in lanes:
            if lane.thread is not None:
                lane.thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, channel: Channel, lane: _Lane) -> None:
        with self._slots:
            try:
                while True:
                    try:
                        alert = lane.queue.get(timeout=LANE_IDLE_SECONDS)
                    except queue.Empty:
                        with self._lock:
                            if lane.queue.empty():
                                self._lanes.pop(channel, None)
                                return
                        continue
                    if alert is None:
                        return
                    self._deliver(alert, channel, lane)
            finally:
                if lane.http is not None:
                    lane.http.close()

    def _deliver(self, alert: Alert, channel: Channel, lane: _Lane) -> None:
        kind, target = channel
        error, attempts = "", 0
        while attempts < self._retries:
            attempts += 1
            try:
                self._send(kind, target, alert, lane)
            except RefusedTarget as exc:  # nothing was sent, and retrying cannot help
                self._outcome(alert, "alert.failed", kind, target, {"attempts": attempts, "error": f"refused: {exc}"})
                return
            except Exception as exc:  # any channel failure is recorded, never raised into ingest
                error = _error_text(exc)
                # wait before the next try; a closing gateway stops retrying (the event is still written)
                if attempts < self._retries and self._closed.wait(self._backoff * 2 ** (attempts - 1)):
                    break
                continue
            self._outcome(alert, "alert.sent", kind, target, {"attempts": attempts})
            return
        self._outcome(alert, "alert.failed", kind, target, {"attempts": attempts, "error": error})

    def _outcome(self, alert: Alert, type_: str, kind: str, target: str, extra: dict[str, Any]) -> None:
        shown = target if kind == "email" else redact_url(target)  # webhook URLs carry secrets
        try:
            self._record(alert, type_, kind, {"channel": kind, "target": shown, "policy": alert.policy,
                                              "threshold": alert.threshold, **extra})
        except Exception:  # pragma: no cover - the database may be gone at shutdown
            log.exception("could not record %s", type_)
        if self._on_result:
            self._on_result(kind, "sent" if type_ == "alert.sent" else "failed")

    def _send(self, kind: str, target: str, alert: Alert, lane: _Lane) -> None:
        if kind == "email":
            self._send_email(target, alert)
            return
        url = httpx.URL(target)
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = self._egress.check(url.host, port)
        if lane.http is None:
            lane.http = httpx.Client(timeout=self._timeout, follow_redirects=False)
        if kind == "slack":
            body = json.dumps(self._slack_body(alert))
        else:
            body = json.dumps(alert.payload())
        headers = {"content-type": "application/json", "host": url.netloc.decode("ascii")}
        resp = _post_pinned(lane.http, url, addresses, body, headers)
        if resp.status_code >= 300:
            raise DeliveryError(f"HTTP {resp.status_code}")

    def _send_email(self, to: str, alert: Alert) -> None:
        parts = urlsplit(self._smtp_url or "smtp://127.0.0.1:25")
        msg = EmailMessage()
        msg["From"] = self._smtp_from
        msg["To"] = to
        msg["Subject"] = alert.text()
        msg.set_content(self._email_body(to, alert))
        smtp_cls = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
        with smtp_cls(parts.hostname or "127.0.0.1", parts.port or (465 if parts.scheme == "smtps" else 25),
                      timeout=self._timeout) as smtp:
            if parts.username:
                smtp.login(parts.username, parts.password or "")
            smtp.send_message(msg)


    def _tokens(self, alert: Alert, channel: str, to: str) -> tuple[str, str] | None:
        """Signed approve/deny tokens for an approval alert (``None`` for other alerts or without a signer)."""
        if alert.kind != "approval" or not alert.details or self.approvals is None:
            return None
        d = alert.details
        created = int(parse_iso(d["created_at"]) or 0)
        expires = min(int(parse_iso(d["resets_at"]) or 0), created + MAX_LINK_SECONDS)
        return tuple(self.approvals.token(Claims(d["id"], alert.org, decision, channel, to, expires))  # type: ignore[return-value]
                     for decision in ("approve", "deny"))

    def _slack_body(self, alert: Alert) -> dict[str, Any]:
        if alert.kind == "slack_update" and alert.details:
            return alert.details  # a decided request's message, replacing the buttons (``_slack.decided_message``)
        tokens = self._tokens(alert, "slack", "slack")
        if tokens is None or alert.details is None:
            return {"text": alert.text()}
        return _slack.message(alert.text().removeprefix("[axme-meter] approval needed: "), alert.details, *tokens)

    def _email_body(self, to: str, alert: Alert) -> str:
        tokens = self._tokens(alert, "email", to)
        if tokens is None or self.approvals is None:
            return json.dumps(alert.payload(), indent=2)
        approve, deny = (self.approvals.link(t) for t in tokens)
        return (f"{alert.text()}\n\nApprove (raise the limit and resume the agent):\n{approve}\n\n"
                f"Deny (the agent stays paused):\n{deny}\n\nEach link asks you to confirm, works once, and expires "
                f"at {alert.details and alert.details['resets_at']} at the latest.\n\n"
                + json.dumps(alert.payload(), indent=2))


def _post_pinned(http: httpx.Client, url: httpx.URL, addresses: list[str], body: str, headers: dict[str, str]) -> httpx.Response:
    """POST to the checked addresses themselves (the Host header and TLS server name keep the host name, so
    certificates are still verified for it); a dual-stack name falls back to its next address on a refused connect."""
    for address in addresses[:-1]:
        try:
            return http.post(url.copy_with(host=address), content=body, headers=headers, extensions={"sni_hostname": url.host})
        except httpx.ConnectError:
            continue
    return http.post(url.copy_with(host=addresses[-1]), content=body, headers=headers, extensions={"sni_hostname": url.host})


class DeliveryError(Exception):
    """The receiver answered, but not with 2xx (only the status is kept: never its body or headers)."""


def _error_text(exc: Exception) -> str:
    """What an ``alert.failed`` event stores: the exception's type and message, every URL redacted."""
    return redact_text(f"{type(exc).__name__}: {exc}")[:500]
