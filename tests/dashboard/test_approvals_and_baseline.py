"""The agent page: Approve / Deny for org admins (through ``_commands``, as the API), and the spend-rate
baseline band on the day chart. Each test runs its own gateway process (they move its clock)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from support.dashboard_helpers import agent_path, csrf_of, http_login
from support.gateway_helpers import entry, send
from support.gateway_process import GatewayProcess

AGENT = "agent://acme/prod/approver-demo"
NOON = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def _at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path, clock=_at(NOON)) as gateway:
        yield gateway


def _aid(http: httpx.Client) -> str:
    return str(http.get(f"/v1/mesh/agents/{agent_path(AGENT)}").json()["address_id"])


def _pending(http: httpx.Client) -> list[dict[str, str]]:
    return list(http.get("/v1/mesh/approvals", params={"state": "pending"}).json()["approvals"])


def test_org_admins_approve_and_deny_on_the_agent_page(gw: GatewayProcess) -> None:
    acme_admin = gw.create_key("acme", admin=True)
    globex_admin = gw.create_key("globex", admin=True)
    acme_reader = gw.create_key("acme")
    with gw.client() as api:
        api.put(f"/v1/mesh/agents/{agent_path(AGENT)}/policies/cost",
                json={"max_cost_per_day_usd": "1", "action_on_breach": "require_approval"}).raise_for_status()
        send(api, entry(AGENT, "1.5"))
        aid = _aid(api)
        request = _pending(api)[0]
        with http_login(gw, acme_admin) as acme, http_login(gw, globex_admin) as globex, http_login(gw, acme_reader) as reader:
            page = acme.get(f"/dashboard/agents/{aid}").text
            assert 'id="approvals"' in page and request["id"] in page and "Approve" in page and "$1.5" in page
            assert 'id="approvals"' not in reader.get(f"/dashboard/agents/{aid}").text
            action = f"/dashboard/agents/{aid}/approvals/{request['id']}"
            assert acme.post(action, data={"decision": "approve"}).status_code == 403  # no CSRF token
            token = csrf_of(reader.get("/dashboard").text)
            assert reader.post(action, data={"decision": "approve", "csrf": token}).status_code == 403  # not an admin
            token = csrf_of(globex.get("/dashboard").text)
            assert globex.post(action, data={"decision": "approve", "csrf": token}).status_code == 404  # another org
            assert _pending(api)[0]["id"] == request["id"]

            done = acme.post(action, data={"decision": "approve", "csrf": csrf_of(page)})
            assert done.status_code == 303 and done.headers["location"].endswith("#approvals")
            assert api.get(f"/v1/mesh/agents/{agent_path(AGENT)}").json()["state"] == "active"
            event = api.get("/v1/mesh/events", params={"type": "approval.approved"}).json()["events"][0]["data"]
            assert event["by"] == acme_admin[:16] and event["channel"] == "dashboard"
            assert 'id="approvals"' not in acme.get(f"/dashboard/agents/{aid}").text
            again = acme.post(action, data={"decision": "deny", "csrf": csrf_of(page)})
            assert again.status_code == 409  # decided: nothing changes

            send(api, entry(AGENT, "1"))  # over the raised $2: paused again, a new request
            second = _pending(api)[0]
            page = acme.get(f"/dashboard/agents/{aid}").text
            denied = acme.post(f"/dashboard/agents/{aid}/approvals/{second['id']}", data={"decision": "deny", "csrf": csrf_of(page)})
            assert denied.status_code == 303
            assert api.get(f"/v1/mesh/agents/{agent_path(AGENT)}").json()["state"] == "paused"


def test_the_day_chart_shows_the_spend_rate_baseline_band(gw: GatewayProcess) -> None:
    with gw.client() as api:
        api.put(f"/v1/mesh/agents/{agent_path(AGENT)}/policies/cost",
                json={"max_cost_per_month_usd": "100", "alert_on_spend_rate_multiple": "3"}).raise_for_status()
        day_start = NOON.replace(hour=0)
        for hour in range(-48, 12):  # $0.06 in every hour of the two days before, and this morning
            gw.set_clock(_at(day_start + timedelta(hours=hour, minutes=30)))
            assert send(api, entry(AGENT, "0.06")).status_code == 200
        gw.set_clock(_at(NOON))
        aid = _aid(api)
    with http_login(gw, gw.admin_key) as dash:
        day = dash.get(f"/dashboard/agents/{aid}?view=day").text
        bands = re.findall(r'class="baseline-band" data-baseline="(\d+)" data-alert="(\d+)"', day)
        assert len(bands) == 24 and set(bands) == {("60000000000", "180000000000")}  # $0.06 usual, alert above $0.18
        assert 'id="band-legend"' in day and "alert above $0.18" in day
        week = dash.get(f"/dashboard/agents/{aid}?view=week").text
        assert "baseline-band" not in week


def test_the_policy_form_keeps_the_approval_and_spend_rate_fields(gw: GatewayProcess) -> None:
    with gw.client() as api:
        api.put(f"/v1/mesh/agents/{agent_path(AGENT)}/policies/cost",
                json={"max_cost_per_day_usd": "5", "action_on_breach": "require_approval", "approval_raise_usd": "2.5",
                      "alert_on_spend_rate_multiple": "4"}).raise_for_status()
        aid = _aid(api)
        with http_login(gw, gw.admin_key) as dash:
            page = dash.get(f"/dashboard/agents/{aid}").text
            assert 'name="approval_raise_usd" value="2.50"' in page and 'name="alert_on_spend_rate_multiple" value="4"' in page
            form = dict(re.findall(r'<input id="f-[^"]+" name="([^"]+)" value="([^"]*)"', page))
            form.update(csrf=csrf_of(page), action_on_breach="require_approval", on_unpriced_call="estimate",
                        alert_on_spend_rate_multiple="1")
            refused = dash.post(f"/dashboard/agents/{aid}/policy", data=form)
            assert refused.status_code == 422 and 'data-field-error="alert_on_spend_rate_multiple"' in refused.text
            form["alert_on_spend_rate_multiple"] = "4"
            assert dash.post(f"/dashboard/agents/{aid}/policy", data=form).status_code == 303
        stored = api.get(f"/v1/mesh/agents/{agent_path(AGENT)}/policies/cost").json()
        assert stored["approval_raise_usd"] == "2.50" and stored["alert_on_spend_rate_multiple"] == "4"
