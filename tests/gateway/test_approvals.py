"""``action_on_breach: require_approval`` through real gateway processes: Slack buttons, email links, the API.

A breach pauses the agent and opens a request; the request reaches a local Slack workspace (a message with
Approve/Deny buttons, whose clicks are posted back signed like Slack's) and a local SMTP server (signed,
single-use links). Approving raises the limit for the rest of the window and resumes the agent; denying keeps
it paused; replayed, expired, forged and cross-org decisions get a 4xx and change nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.gateway_helpers import entry, path, policy_path, send
from support.gateway_process import ROOT, GatewayProcess
from support.polling import wait_for
from support.receivers import SMTPReceiver
from support.slack import SlackWorkspace

AGENT = "agent://acme/prod/researcher"
SECRET = "slack-signing-secret-for-tests"
NOON = "2026-11-28T12:00:00Z"
NOON_TS = 1795867200  # 2026-11-28T12:00:00Z
OWNER = "owner@acme.test"


@pytest.fixture
def setup(tmp_path: Path, db_url: str) -> Iterator[tuple[GatewayProcess, SlackWorkspace, SMTPReceiver]]:
    with SlackWorkspace(SECRET) as slack, SMTPReceiver() as smtp:
        env = {"AXME_GATEWAY_WEBHOOK_ALLOW": "127.0.0.1", "AXME_GATEWAY_SMTP_URL": smtp.url,
               "AXME_GATEWAY_SLACK_SIGNING_SECRET": SECRET, "AXME_GATEWAY_ALERT_RETRIES": "2",
               "AXME_GATEWAY_ALERT_BACKOFF": "0.05"}
        with GatewayProcess(tmp_path, db_url=db_url, clock=NOON, env=env) as gw:
            with gw.client() as http:
                policy = {"max_cost_per_day_usd": "1", "action_on_breach": "require_approval", "alert_thresholds": [1.0],
                          "notify": {"email": [OWNER], "slack_webhook": slack.webhook_url,
                                     "webhook": slack.webhook_url.replace("/slack-hook", "/generic")}}
                assert http.put(policy_path(AGENT), json=policy).status_code == 200
            yield gw, slack, smtp


def _state(http: httpx.Client, agent: str = AGENT) -> str:
    return str(http.get(f"/v1/mesh/agents/{path(agent)}").json()["state"])


def _events(http: httpx.Client, type_: str) -> list[dict[str, Any]]:
    return list(http.get("/v1/mesh/events", params={"type": type_, "limit": 1000}).json()["events"])


def _breach(gw: GatewayProcess, http: httpx.Client, cost: str = "1.2") -> dict[str, Any]:
    """Spend over the limit: the agent pauses and exactly one pending request opens."""
    before = len(http.get("/v1/mesh/approvals").json()["approvals"])
    send(http, entry(AGENT, cost))
    assert _state(http) == "paused"
    listed = http.get("/v1/mesh/approvals", params={"state": "pending"}).json()["approvals"]
    assert len(http.get("/v1/mesh/approvals").json()["approvals"]) == before + 1
    return dict(listed[0])


def _links(smtp: SMTPReceiver, count: int = 1) -> dict[str, str]:
    mails = wait_for(lambda: [m for m in smtp.messages if "approval needed" in (m["subject"] or "")][count - 1:] or None,
                     f"approval mail #{count}")
    text = mails[0]["text"].replace("\r\n", "\n")
    found = dict(re.findall(r"^(Approve|Deny)[^\n]*:\n(http\S+)$", text, flags=re.M))
    assert set(found) == {"Approve", "Deny"}, text
    return {"approve": found["Approve"], "deny": found["Deny"]}


def test_slack_approve_raises_the_limit_resumes_and_refuses_replays_and_forgeries(setup: Any) -> None:
    gw, slack, _smtp = setup
    with gw.client() as http:
        request = _breach(gw, http)
        assert request["agent"] == AGENT and request["policy"] == "max_cost_per_day_usd"
        assert (request["spent"], request["limit"], request["raise"], request["new_limit"]) == ("1.20", "1.00", "1.00", "2.00")
        message = slack.wait_for_message()
        assert request["id"] in message["blocks"][0]["text"]["text"]
        hook = wait_for(lambda: slack.posts("/services/T000/B000/generic"), "the webhook's approval.requested")[0]
        assert hook["type"] == "approval.requested" and hook["approval"]["id"] == request["id"]

        forged = slack.click(gw.url, message, "approve", user="U999", at=NOON_TS, secret="not-the-secret")
        assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_signature"
        stale = slack.click(gw.url, message, "approve", user="U999", at=NOON_TS - 600)
        assert stale.status_code == 401 and stale.json()["error"]["code"] == "stale_request"
        tampered_value = slack.button(message, "approve")["value"][:-3] + "AAA"
        tampered = slack.click(gw.url, message, "approve", user="U999", at=NOON_TS, value=tampered_value)
        assert tampered.status_code == 403 and tampered.json()["error"]["code"] == "invalid_token"
        assert _state(http) == "paused" and _events(http, "approval.approved") == []

        clicked = slack.click(gw.url, message, "approve", user="U0APPROVER", at=NOON_TS + 5)
        assert clicked.status_code == 200, clicked.text
        assert clicked.json()["approval"]["state"] == "approved" and clicked.json()["agent_state"] == "active"
        assert _state(http) == "active"
        policies = http.get(f"/v1/mesh/agents/{path(AGENT)}/policies/cost").json()
        assert policies["max_cost_per_day_usd"] in ("1", "1.00")  # the policy itself is unchanged: the raise is temporary
        answer = send(http, entry(AGENT, "0.1"))
        assert answer.status_code == 200
        day = next(p for p in answer.json()["agents"][AGENT]["policies"] if p["name"] == "max_cost_per_day_usd")
        assert (day["limit"], day["spent"], day["remaining"]) == ("2.00", "1.30", "0.70")  # raised for this window
        detail = http.get(f"/v1/mesh/agents/{path(AGENT)}").json()
        assert [(p["limit"], p["remaining"]) for p in detail["policies"] if p["name"] == "max_cost_per_day_usd"] == [("2.00", "0.70")]
        listed = http.get("/v1/mesh/agents", params={"limit": 10}).json()["agents"]
        assert [p["limit"] for a in listed for p in a["policies"] if p["name"] == "max_cost_per_day_usd"] == ["2.00"]
        assert _state(http) == "active"

        update = wait_for(slack.updates, "the decided message for Slack's response_url")[0]
        assert update["replace_original"] is True and "Approved by <@U0APPROVER>" in update["text"]
        assert "actions" not in {b["type"] for b in update["blocks"]}  # the buttons are gone
        replay = slack.click(gw.url, message, "approve", user="U0APPROVER", at=NOON_TS + 5)
        assert replay.status_code == 409 and replay.json()["error"]["code"] == "approval_decided"
        deny_after = slack.click(gw.url, message, "deny", user="U0OTHER", at=NOON_TS + 6)
        assert deny_after.status_code == 409
        approved = _events(http, "approval.approved")
        assert len(approved) == 1 and approved[0]["data"]["by"] == "slack:U0APPROVER"
        resumed = _events(http, "agent.resumed")
        assert resumed[0]["data"]["by"] == "slack:U0APPROVER" and resumed[0]["data"]["approval_id"] == request["id"]
        assert _events(http, "approval.requested")[0]["data"]["approval_id"] == request["id"]

        # the raised limit ($2) is breached again: paused again, and a new request
        second = _breach(gw, http, "0.8")
        assert second["id"] != request["id"] and (second["limit"], second["raise"], second["new_limit"]) == ("2.00", "1.00", "3.00")
        slack.wait_for_message(2)


def test_email_link_confirms_on_get_decides_on_post_once(setup: Any) -> None:
    gw, _slack, smtp = setup
    with gw.client() as http:
        request = _breach(gw, http)
        links = _links(smtp)
        assert links["deny"].startswith(gw.url + "/v1/approvals/links/")
        for _ in range(2):  # a mail scanner prefetching the links decides nothing
            for link in links.values():
                page = httpx.get(link, timeout=30)
                assert page.status_code == 200 and "<form method='post'>" in page.text
        assert http.get(f"/v1/mesh/approvals/{request['id']}").json()["approval"]["state"] == "pending"

        denied = httpx.post(links["deny"], timeout=30)
        assert denied.status_code == 200 and "denied" in denied.text
        assert _state(http) == "paused"
        event = _events(http, "approval.denied")
        assert len(event) == 1 and event[0]["data"]["by"] == f"email:{OWNER}" and event[0]["data"]["channel"] == "email"

        for link in links.values():  # single use: the request is decided, every link for it is spent
            for method in ("GET", "POST"):
                replay = httpx.request(method, link, timeout=30)
                assert replay.status_code == 409 and replay.json()["error"]["code"] == "approval_decided"
        assert _state(http) == "paused" and _events(http, "approval.approved") == []
        assert http.post(f"/v1/mesh/approvals/{request['id']}/approve").status_code == 409


def test_email_approve_link_resumes(setup: Any) -> None:
    gw, _slack, smtp = setup
    with gw.client() as http:
        _breach(gw, http)
        approved = httpx.post(_links(smtp)["approve"], timeout=30)
        assert approved.status_code == 200 and "approved" in approved.text
        assert _state(http) == "active"
        assert _events(http, "approval.approved")[0]["data"]["by"] == f"email:{OWNER}"


def test_expired_forged_and_cross_org_decisions_change_nothing(setup: Any) -> None:
    gw, slack, smtp = setup
    globex_admin = gw.create_key("globex", admin=True)
    acme_bound = gw.create_key("acme", admin=True, agent="agent://acme/prod/other")
    with gw.client() as http, gw.client(globex_admin) as globex, gw.client(acme_bound) as bound:
        request = _breach(gw, http)
        links = _links(smtp)
        message = slack.wait_for_message()

        for client in (globex, bound):  # another org's (or another agent's) admin sees nothing
            assert client.get(f"/v1/mesh/approvals/{request['id']}").status_code == 404
            refused = client.post(f"/v1/mesh/approvals/{request['id']}/approve")
            assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
            assert client.get("/v1/mesh/approvals").json()["approvals"] == []
        agent_key = gw.create_key("acme", agent=AGENT)
        with gw.client(agent_key) as plain:
            assert plain.post(f"/v1/mesh/approvals/{request['id']}/approve").status_code == 403

        token = links["approve"].rsplit("/", 1)[1]
        body, signature = token.split(".")
        forged = httpx.post(f"{gw.url}/v1/approvals/links/{body}.{signature[::-1]}", timeout=30)
        assert forged.status_code == 403 and forged.json()["error"]["code"] == "invalid_token"
        for junk in ("%C3%A9.%C3%A9", f"{body}.%C3%A9", "x" * 2100, "a.b", f"{body}."):
            refused = httpx.post(f"{gw.url}/v1/approvals/links/{junk}", timeout=30)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "invalid_token", junk
        body_bytes = slack.interaction(message, "approve", "U1")
        odd = httpx.post(f"{gw.url}/v1/slack/interactions", content=body_bytes, timeout=30,
                         headers=[(b"x-slack-request-timestamp", str(NOON_TS).encode()), (b"x-slack-signature", b"v0=\xe9\xff")])
        assert odd.status_code == 401 and odd.json()["error"]["code"] == "invalid_signature"
        slack_token_by_mail = httpx.post(f"{gw.url}/v1/approvals/links/{slack.button(message, 'approve')['value']}", timeout=30)
        assert slack_token_by_mail.status_code == 403
        assert _state(http) == "paused"

        gw.set_clock("2026-11-29T00:00:05Z")  # the window (and with it the request) has ended
        for link in links.values():
            for method in ("GET", "POST"):
                expired = httpx.request(method, link, timeout=30)
                assert expired.status_code == 410 and expired.json()["error"]["code"] == "link_expired"
        late = http.post(f"/v1/mesh/approvals/{request['id']}/approve")
        assert late.status_code == 410 and late.json()["error"]["code"] == "approval_expired"
        late_click = slack.click(gw.url, message, "approve", user="U1", at=NOON_TS + 12 * 3600 + 5)
        assert late_click.status_code == 410
        assert http.get("/v1/mesh/approvals", params={"state": "expired"}).json()["approvals"][0]["id"] == request["id"]
        assert _state(http) == "paused" and _events(http, "approval.approved") == []


def test_api_approve_and_deny_record_the_key_prefix(setup: Any) -> None:
    gw, _slack, _smtp = setup
    admin = gw.create_key("acme", admin=True)
    prefix = admin[:16]
    with gw.client() as http, gw.client(admin) as acme:
        request = _breach(gw, http)
        assert acme.post(f"/v1/mesh/approvals/{request['id']}/deny").json()["agent_state"] == "paused"
        assert _events(http, "approval.denied")[0]["data"]["by"] == prefix
        assert _state(http) == "paused"
        assert acme.post("/v1/mesh/approvals/apr_0000/approve").status_code == 404
        # an admin resumes by hand; the next breach of the same (unraised) limit is already claimed: the
        # admin's resume sticks for the window, like pause
        assert acme.post(f"/v1/mesh/agents/{path(AGENT)}/resume").status_code == 200
        send(http, entry(AGENT, "0.1"))
        assert _state(http) == "active"


def test_bad_policy_fields_are_refused(setup: Any) -> None:
    gw, _slack, _smtp = setup
    with gw.client() as http:
        for bad in ("0", "-5", "abc", "1e3"):
            resp = http.put(policy_path(AGENT), json={"max_cost_per_day_usd": "1", "approval_raise_usd": bad})
            assert resp.status_code == 422 and resp.json()["error"]["details"]["field"] == "approval_raise_usd"
        resp = http.put(policy_path(AGENT), json={"max_cost_per_day_usd": "1", "action_on_breach": "require_approval",
                                                  "approval_raise_usd": "0.25"})
        assert resp.status_code == 200 and resp.json()["approval_raise_usd"] == "0.25"
        assert http.get("/v1/mesh/approvals", params={"state": "bogus"}).status_code == 422


def _cli(*args: str, clock_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXME_")}
    env["PYTHONPATH"] = str(ROOT)
    if clock_file is not None:  # --db decides at the gateway's (test) time
        env["AXME_GATEWAY_CLOCK_FILE"] = str(clock_file)
    return subprocess.run([sys.executable, "-m", "axme_meter", *args], capture_output=True, text=True, env=env,
                          cwd=str(ROOT), timeout=60, stdin=subprocess.DEVNULL)


def test_cli_lists_approves_and_denies(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    with GatewayProcess(tmp_path, db_url=db, clock=NOON) as gw, gw.client() as http:
        assert http.put(policy_path(AGENT), json={"max_cost_per_day_usd": "1", "action_on_breach": "require_approval"}
                        ).status_code == 200
        first = _breach(gw, http)
        remote = ("--gateway", gw.url, "--api-key", gw.admin_key)
        listed = _cli("approvals", "list", *remote)
        assert listed.returncode == 0 and first["id"] in listed.stdout and "pending" in listed.stdout, listed.stderr
        as_json = json.loads(_cli("approvals", "list", "--state", "all", "--json", *remote).stdout)
        assert [a["id"] for a in as_json["approvals"]] == [first["id"]]
        approved = _cli("approvals", "approve", first["id"], *remote)
        assert approved.returncode == 0 and "approved" in approved.stdout and "$2.00" in approved.stdout, approved.stderr
        again = _cli("approvals", "approve", first["id"], *remote)
        assert again.returncode == 1 and "already approved" in again.stderr and len(again.stderr.strip().splitlines()) == 1
        assert _state(http) == "active"

        second = _breach(gw, http, "1")
        denied = _cli("approvals", "deny", second["id"], "--db", db, clock_file=gw.clock_file)
        assert denied.returncode == 0 and "stays paused" in denied.stdout, denied.stderr
        assert _state(http) == "paused"
        by = {e["data"]["approval_id"]: e["data"]["by"] for e in _events(http, "approval.approved") + _events(http, "approval.denied")}
        assert by == {first["id"]: _prefix(gw.admin_key), second["id"]: "cli"}
        missing = _cli("approvals", "deny", "apr_nope", "--db", db)
        assert missing.returncode == 1 and "not found" in missing.stderr


def _prefix(key: str) -> str:
    from axme_meter.gateway._store import key_prefix

    return key_prefix(key)


def test_a_previous_schema_database_upgrades_and_then_asks_for_approval(tmp_path: Path, db_url: str) -> None:
    """A database a schema-5 gateway left (no approvals, no gateway secrets) gains both at start; its agents,
    policies and spend are kept, and require_approval then works on it."""
    from sqlalchemy import text

    from axme_meter.gateway._db import SCHEMA_VERSION, make_engine

    with GatewayProcess(tmp_path / "a", db_url=db_url, clock=NOON) as gw, gw.client() as http:
        assert http.put(policy_path(AGENT), json={"max_cost_per_day_usd": "1", "action_on_breach": "require_approval"}
                        ).status_code == 200
        send(http, entry(AGENT, "0.4"))
    engine = make_engine(db_url)
    try:  # what the previous schema had: neither table of schema 6
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE axme_approvals"))
            conn.execute(text("DROP TABLE axme_gateway_secrets"))
            conn.execute(text("UPDATE axme_schema_version SET version = 5"))
    finally:
        engine.dispose()
    with SMTPReceiver() as smtp, GatewayProcess(tmp_path / "b", db_url=db_url, clock=NOON,
                                                env={"AXME_GATEWAY_SMTP_URL": smtp.url}) as gw, gw.client() as http:
        assert http.get("/v1/mesh/approvals").json()["approvals"] == []
        http.put(policy_path(AGENT), json={"max_cost_per_day_usd": "1", "action_on_breach": "require_approval",
                                           "notify": {"email": [OWNER]}}).raise_for_status()
        request = _breach(gw, http, "0.7")
        assert request["spent"] == "1.10"  # the spend booked before the upgrade counts
        assert httpx.post(_links(smtp)["approve"], timeout=30).status_code == 200
        assert _state(http) == "active"
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version FROM axme_schema_version")).scalar() == SCHEMA_VERSION >= 6
            assert conn.execute(text("SELECT count(*) FROM axme_gateway_secrets")).scalar() == 1
    finally:
        engine.dispose()
