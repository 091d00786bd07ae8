"""The redaction matrix against a real gateway process: every key kind x every read path.

Slack / webhook URLs carry their secret. Only org admins (admin keys not bound to an
agent, and the super-admin) read them back, and only through ``GET …/policies/cost``
(and the answer to their own ``PUT``). Everywhere else they show as
``scheme://host:port/…`` plus the last 4 characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from support.gateway_helpers import entry, path, policy_path, send
from support.gateway_process import GatewayProcess
from support.receivers import HTTPReceiver
from support.polling import wait_for

AGENT = "agent://acme/production/secretive"
SLACK_SECRET = "slacksecret0123456789"
HOOK_SECRET = "hooksecret9876543210"
KINDS = ["super", "org_admin", "org_user", "bound_user", "bound_admin"]
READS_SECRETS = {"super", "org_admin"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A gateway whose agent has a policy with both URLs: the Slack alert is delivered, the webhook one fails."""
    with HTTPReceiver(failing=(f"/fail/{HOOK_SECRET}abcd",)) as hooks:
        urls = {"slack_webhook": hooks.url(f"/slack/{SLACK_SECRET}wxyz"), "webhook": hooks.url(f"/fail/{HOOK_SECRET}abcd")}
        env = {"AXME_GATEWAY_WEBHOOK_ALLOW": "127.0.0.1", "AXME_GATEWAY_ALERT_RETRIES": "1"}
        gw = GatewayProcess(tmp_path_factory.mktemp("redaction"), clock="2026-11-28T12:00:00Z", env=env)
        with gw:
            keys = {"super": gw.admin_key, "org_admin": gw.create_key("acme", admin=True), "org_user": gw.create_key("acme"),
                    "bound_user": gw.create_key("acme", agent=AGENT), "bound_admin": gw.create_key("acme", admin=True, agent=AGENT)}
            with gw.client() as http:
                put = http.put(policy_path(AGENT), json={"max_cost_per_day_usd": "1", "alert_thresholds": [0.5],
                                                         "notify": {"email": ["ops@example.com"], **urls}})
                assert put.status_code == 200 and put.json()["notify"]["webhook"] == urls["webhook"]
                assert send(http, entry(AGENT, "0.60")).status_code == 200
                wait_for(lambda: len(_events(http, "alert.sent", "alert.failed")) == 3, "slack sent; webhook and email (no SMTP) failed")
            _insert_legacy_event(gw, urls)
            yield {"gw": gw, "keys": keys, "urls": urls}


def _events(http: httpx.Client, *types: str) -> list[dict[str, Any]]:
    return list(http.get("/v1/mesh/events", params={"types": ",".join(types), "agent": AGENT}).json()["events"])


def _insert_legacy_event(gw: GatewayProcess, urls: dict[str, str]) -> None:
    """A ``policy.updated`` row as versions before redaction wrote it (full URLs): reads must redact it too."""
    from axme_meter.gateway import _store
    from axme_meter.gateway._db import make_engine

    engine = make_engine(gw.db_url)
    try:
        with engine.begin() as conn:
            _store.add_event(conn, "acme", _store.address_id(AGENT), "policy.updated",
                             {"agent": AGENT, "policy": {"notify": dict(urls)}, "legacy": True}, 1_700_000_000)
    finally:
        engine.dispose()


def _redacted(url: str) -> str:
    return re.sub(r"^(https?://[^/]+)/.*$", r"\1/…", url) + url[-4:]


@contextmanager
def _dashboard(gw: GatewayProcess, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=30.0, follow_redirects=False) as client:
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/dashboard/login").text)
        assert token
        assert client.post("/dashboard/login", data={"api_key": key, "csrf": token.group(1)}).status_code == 303
        yield client


def _read_paths(gw: GatewayProcess, key: str) -> dict[str, str]:
    """Every place a webhook URL could surface for this key, as text."""
    out: dict[str, str] = {}
    with gw.client(key) as http:
        aid = http.get(f"/v1/mesh/agents/{path(AGENT)}").json()["address_id"]
        out["GET policy"] = http.get(policy_path(AGENT)).text
        out["GET agent"] = http.get(f"/v1/mesh/agents/{path(AGENT)}").text
        out["GET agent by id"] = http.get(f"/v1/mesh/agents/{aid}").text
        out["GET agents"] = http.get("/v1/mesh/agents").text
        out["GET events"] = http.get("/v1/mesh/events", params={"limit": 1000}).text
        out["GET agent events"] = http.get("/v1/mesh/events", params={"agent": AGENT}).text
    with _dashboard(gw, key) as browser:
        out["dashboard agent page"] = browser.get(f"/dashboard/agents/{aid}").text
        out["dashboard live fragment"] = browser.get(f"/dashboard/live/agents/{aid}").text
        out["dashboard overview"] = browser.get("/dashboard").text
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_secrets_show_only_to_org_admins_through_the_policy_endpoint(world: dict[str, Any], kind: str) -> None:
    gw, urls = world["gw"], world["urls"]
    seen = _read_paths(gw, world["keys"][kind])
    for where, text in seen.items():
        full = where == "GET policy" and kind in READS_SECRETS
        for secret in (SLACK_SECRET, HOOK_SECRET):
            assert (secret in text) == full, (kind, where, secret)
    policy = json.loads(seen["GET policy"])["notify"]
    if kind in READS_SECRETS:
        assert policy["slack_webhook"] == urls["slack_webhook"] and policy["webhook"] == urls["webhook"]
    else:
        assert policy["slack_webhook"] == _redacted(urls["slack_webhook"]) and policy["webhook"] == _redacted(urls["webhook"])
    agent = json.loads(seen["GET agent"])
    assert agent["policy"]["notify"]["webhook"] == _redacted(urls["webhook"])
    assert agent["policy"]["notify"]["email"] == ["ops@example.com"]  # emails are not secrets
    events = json.loads(seen["GET agent events"])["events"]
    updated = [e for e in events if e["type"] == "policy.updated"]
    assert len(updated) == 2 and all(e["data"]["policy"]["notify"]["slack_webhook"] == _redacted(urls["slack_webhook"])
                                     for e in updated)  # the legacy row too
    outcomes = {e["data"]["channel"]: e["data"] for e in events if e["type"] in ("alert.sent", "alert.failed")}
    assert outcomes["slack"]["target"] == _redacted(urls["slack_webhook"])
    assert outcomes["webhook"]["target"] == _redacted(urls["webhook"]) and outcomes["webhook"]["error"] == "DeliveryError: HTTP 500"
    page = seen["dashboard agent page"]
    assert _redacted(urls["webhook"]) in page  # the tooltips (and, for admins, the form) show the redacted URL


@pytest.mark.parametrize("kind", ["org_admin", "bound_admin"])
def test_writing_back_what_a_read_showed_keeps_the_stored_urls(world: dict[str, Any], kind: str) -> None:
    gw, urls = world["gw"], world["urls"]
    with gw.client(world["keys"][kind]) as http:
        shown = http.get(f"/v1/mesh/agents/{path(AGENT)}").json()["policy"]  # redacted for everyone
        assert shown["notify"]["webhook"] != urls["webhook"]
        answer = http.put(policy_path(AGENT), json={**shown, "max_cost_per_day_usd": "1"})
        assert answer.status_code == 200, answer.text
        assert (HOOK_SECRET in answer.text) == (kind in READS_SECRETS)  # a bound admin writes, but never reads back
        bad = http.put(policy_path(AGENT), json={**shown, "notify": {**shown["notify"], "webhook": "https://evil.example/…abcd"}})
        assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "notify.webhook"
    with gw.client() as http:
        stored = http.get(policy_path(AGENT)).json()["notify"]
    assert stored["webhook"] == urls["webhook"] and stored["slack_webhook"] == urls["slack_webhook"]


def test_the_dashboard_form_saved_unchanged_keeps_the_stored_urls(world: dict[str, Any]) -> None:
    gw, urls = world["gw"], world["urls"]
    with gw.client() as http:
        aid = http.get(f"/v1/mesh/agents/{path(AGENT)}").json()["address_id"]
    with _dashboard(gw, world["keys"]["org_admin"]) as browser:
        page = browser.get(f"/dashboard/agents/{aid}").text
        values = dict(re.findall(r'<input id="f-[^"]+" name="([^"]+)" value="([^"]*)"', page))
        assert values["notify.webhook"] == _redacted(urls["webhook"]).replace("&", "&amp;")
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert token
        form = {**{k: v.replace("&amp;", "&") for k, v in values.items()}, "csrf": token.group(1), "action_on_breach": "notify"}
        resp = browser.post(f"/dashboard/agents/{aid}/policy", data=form)
        assert resp.status_code == 303, resp.text
    with gw.client() as http:
        stored = http.get(policy_path(AGENT)).json()["notify"]
    assert stored["webhook"] == urls["webhook"] and stored["slack_webhook"] == urls["slack_webhook"]
