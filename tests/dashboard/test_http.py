"""Dashboard over plain HTTP (no browser): CSRF, auth, escaping, and numbers equal to the JSON API."""

from __future__ import annotations

import html
import re
from decimal import Decimal

import httpx
import pytest

from support.dashboard_helpers import EXPECTED, MAIN, XSS, XSS_MODEL, api_agent, api_costs, csrf_of, http_login
from support.gateway_process import GatewayProcess


def _aid(gw: GatewayProcess, agent: str) -> str:
    return str(api_agent(gw, agent)["address_id"])


def test_pages_need_a_session(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url, follow_redirects=False) as anon:
        assert anon.get("/dashboard").headers["location"] == "/dashboard/login"
        assert anon.get(f"/dashboard/agents/{_aid(gateway, MAIN)}").status_code == 303
        assert anon.get("/dashboard/live/overview").status_code == 401


def test_login_sets_httponly_samesite_cookie_and_rejects_unknown_keys(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url, follow_redirects=False) as http:
        token = csrf_of(http.get("/dashboard/login").text)
        bad = http.post("/dashboard/login", data={"api_key": "axme_sa_not_a_key", "csrf": token})
        assert bad.status_code == 401 and "not known" in bad.text
        ok = http.post("/dashboard/login", data={"api_key": gateway.admin_key, "csrf": token})
        assert ok.status_code == 303
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        assert gateway.admin_key.lower() not in cookie  # only the key's digest, signed
        assert http.get("/dashboard").status_code == 200
        logout_token = csrf_of(http.get("/dashboard").text)
        assert http.post("/dashboard/logout", data={"csrf": logout_token}).status_code == 303
        assert http.get("/dashboard").status_code == 303  # logged out


def test_tampered_session_cookie_is_not_a_session(gateway: GatewayProcess) -> None:
    with http_login(gateway, gateway.admin_key) as http:
        cookie = http.cookies["axme_dashboard"]
        http.cookies.set("axme_dashboard", cookie[:-3] + ("AAA" if not cookie.endswith("AAA") else "BBB"), path="/dashboard")
        assert http.get("/dashboard").status_code == 303


def test_empty_state_shows_the_three_lines(gateway: GatewayProcess) -> None:
    with http_login(gateway, gateway.create_key("newcomer")) as http:
        page = http.get("/dashboard").text
    assert "No agents yet" in page
    code = 'import axme_meter\nclient = axme_meter.OpenAI()\nwith axme_meter.agent("agent://myorg/prod/my-agent"): ...'
    assert code in html.unescape(page)
    assert "AXME_GATEWAY_URL" in page and "AXME_API_KEY" in page


def test_admin_org_and_text_filters(gateway: GatewayProcess) -> None:
    with http_login(gateway, gateway.admin_key) as http:
        by_org = http.get("/dashboard/live/overview", params={"org": "globex"}).text
        by_text = http.get("/dashboard", params={"q": "RESEARCH"}).text
    assert "summarizer" in by_org and "researcher" not in by_org
    assert "researcher" in by_text and "summarizer" not in by_text


@pytest.mark.parametrize("path", ["/dashboard/login", "/dashboard/logout", "/dashboard/agents/{aid}/policy", "/dashboard/agents/{aid}/state"])
def test_post_without_or_with_wrong_csrf_token_is_refused(gateway: GatewayProcess, path: str) -> None:
    aid = _aid(gateway, MAIN)
    with http_login(gateway, gateway.admin_key) as http:
        url = path.format(aid=aid)
        data = {"api_key": gateway.admin_key, "action": "kill", "max_cost_per_day_usd": "0.01"}
        assert http.post(url, data=data).status_code == 403
        assert http.post(url, data={**data, "csrf": "0" * 64}).status_code == 403
    # and nothing happened: the agent is neither killed nor given a policy
    assert api_agent(gateway, MAIN)["state"] == "active"


def test_csrf_token_is_tied_to_the_session(gateway: GatewayProcess) -> None:
    aid = _aid(gateway, MAIN)
    with http_login(gateway, gateway.admin_key) as victim, http_login(gateway, gateway.admin_key) as attacker:
        foreign = csrf_of(attacker.get("/dashboard").text)
        assert victim.post(f"/dashboard/agents/{aid}/state", data={"action": "pause", "csrf": foreign}).status_code == 403


def test_org_key_sees_only_its_org_and_cannot_edit(gateway: GatewayProcess) -> None:
    key = gateway.create_key("acme")
    with http_login(gateway, key) as http:
        page = http.get("/dashboard").text
        assert "researcher" in page and "summarizer" not in page
        assert 'name="org"' not in page  # the org filter is for super-admins
        agent_page = http.get(f"/dashboard/agents/{_aid(gateway, MAIN)}").text
        assert "Save policy" not in agent_page
        token = csrf_of(agent_page)
        resp = http.post(f"/dashboard/agents/{_aid(gateway, MAIN)}/policy", data={"csrf": token, "max_cost_per_day_usd": "1"})
        assert resp.status_code == 403
        other = api_agent(gateway, "agent://globex/dev/summarizer")["address_id"]
        assert http.get(f"/dashboard/agents/{other}").status_code == 404


def test_user_strings_are_escaped(gateway: GatewayProcess) -> None:
    with http_login(gateway, gateway.admin_key) as http:
        body = http.get(f"/dashboard/agents/{_aid(gateway, MAIN)}", params={"view": "day", "intent": XSS}).text
    assert XSS not in body and XSS_MODEL not in body
    assert "&lt;script&gt;alert(1)" in body and "&lt;img src=x onerror=alert(2)&gt;" in body


@pytest.mark.parametrize("view,bucket", [("day", "hour"), ("week", "day"), ("month", "day")])
def test_page_totals_equal_the_json_api(gateway: GatewayProcess, view: str, bucket: str) -> None:
    detail = api_agent(gateway, MAIN)
    window = detail["windows"][view]
    api = api_costs(gateway, MAIN, bucket, window["start"], window["end"])
    with http_login(gateway, gateway.admin_key) as http:
        body = http.get(f"/dashboard/agents/{detail['address_id']}", params={"view": view}).text
    shown = re.search(r'id="chart-total" data-total="([^"]+)"', body)
    assert shown and Decimal(shown.group(1)) == Decimal(api["totals"]["cost_usd"]) == Decimal(window["cost_usd"]) == EXPECTED[view]
    assert len(re.findall(r'<rect [^>]*class="barfill"', body)) == len(api["series"])


def test_policy_form_shows_the_api_validation_message_next_to_the_field(gateway: GatewayProcess) -> None:
    aid = _aid(gateway, "agent://globex/dev/summarizer")
    with http_login(gateway, gateway.admin_key) as http:
        token = csrf_of(http.get(f"/dashboard/agents/{aid}").text)
        resp = http.post(f"/dashboard/agents/{aid}/policy", data={"csrf": token, "max_cost_per_day_usd": "-5",
                                                                  "max_intents_per_day": "many", "timezone": "Mars/Olympus"})
        assert resp.status_code == 422
        errors = dict(re.findall(r'data-field-error="([^"]+)">([^<]*)<', resp.text))
        assert errors["max_cost_per_day_usd"] == "must not be negative"
        assert "integer" in errors["max_intents_per_day"]
        assert "unknown IANA timezone" in errors["timezone"]
        with gateway.client() as api:  # the same body through the API names the same first problem
            body = api.put(f"/v1/mesh/agents/{aid}/policies/cost", json={"max_cost_per_day_usd": "-5"}).json()
        assert body["error"]["details"]["errors"][0]["message"] == errors["max_cost_per_day_usd"]
        assert 'value="-5"' in resp.text  # the user's input is kept for correction


def test_a_bound_admin_key_edits_only_its_own_agent(gateway: GatewayProcess) -> None:
    sibling = "agent://acme/prod/sibling"
    with gateway.client() as api:
        assert api.post("/v1/mesh/heartbeat", json={"heartbeats": [{"agent": sibling, "metrics": {"cost_usd": "0.01"}}]}).status_code == 200
    key = gateway.create_key("acme", admin=True, agent=MAIN)
    with http_login(gateway, key) as http:
        own = http.get(f"/dashboard/agents/{_aid(gateway, MAIN)}").text
        assert "Save policy" in own and 'value="pause"' in own
        other = http.get(f"/dashboard/agents/{_aid(gateway, sibling)}").text
        assert "Save policy" not in other and 'value="kill"' not in other  # visible (same org), not editable
        token = csrf_of(other)
        refused = http.post(f"/dashboard/agents/{_aid(gateway, sibling)}/state", data={"csrf": token, "action": "kill"})
        assert refused.status_code == 403 and MAIN in refused.text
        refused = http.post(f"/dashboard/agents/{_aid(gateway, sibling)}/policy", data={"csrf": token, "max_cost_per_day_usd": "1"})
        assert refused.status_code == 403
    assert api_agent(gateway, sibling)["state"] == "active" and api_agent(gateway, sibling)["policy"] is None


def test_policy_form_offers_every_breach_action_and_the_unpriced_call_fields(gateway: GatewayProcess) -> None:
    agent = "agent://acme/prod/form-fields"
    with gateway.client() as api:
        assert api.post("/v1/mesh/heartbeat", json={"heartbeats": [{"agent": agent, "metrics": {"cost_usd": "0.01"}}]}).status_code == 200
    aid = _aid(gateway, agent)
    with http_login(gateway, gateway.admin_key) as http:
        page = http.get(f"/dashboard/agents/{aid}").text
        menu = page.split('id="f-action_on_breach"', 1)[1].split("</select>", 1)[0]
        assert re.findall(r'<option value="([a-z_]+)"', menu) == ["block", "pause", "require_approval", "kill", "notify"]
        unpriced = page.split('id="f-on_unpriced_call"', 1)[1].split("</select>", 1)[0]
        assert re.findall(r'<option value="([a-z_]+)"', unpriced) == ["estimate", "refuse"]
        form = {"csrf": csrf_of(page), "max_cost_per_day_usd": "2", "action_on_breach": "require_approval",
                "on_unpriced_call": "refuse", "unpriced_input_usd_per_1m": "12.5", "unpriced_output_usd_per_1m": "50",
                "timezone": "UTC", "alert_thresholds": "0.5, 1.0"}
        assert http.post(f"/dashboard/agents/{aid}/policy", data=form).status_code == 303
        with gateway.client() as api:
            stored = api.get(f"/v1/mesh/agents/{aid}/policies/cost").json()
        assert (stored["action_on_breach"], stored["on_unpriced_call"]) == ("require_approval", "refuse")
        assert (stored["unpriced_input_usd_per_1m"], stored["unpriced_output_usd_per_1m"]) == ("12.50", "50.00")
        shown = http.get(f"/dashboard/agents/{aid}").text
        assert '<option value="require_approval" selected>' in shown and '<option value="refuse" selected>' in shown
        assert 'name="unpriced_input_usd_per_1m" value="12.50"' in shown
        form.update(csrf=csrf_of(shown), action_on_breach="kill", unpriced_output_usd_per_1m="-1")
        refused = http.post(f"/dashboard/agents/{aid}/policy", data=form)
        assert refused.status_code == 422
        errors = dict(re.findall(r'data-field-error="([^"]+)">([^<]*)<', refused.text))
        assert errors == {"unpriced_output_usd_per_1m": "must not be negative"}
        assert '<option value="kill" selected>' in refused.text  # the submitted choice is kept for correction
        form.update(csrf=csrf_of(refused.text), unpriced_output_usd_per_1m="")
        assert http.post(f"/dashboard/agents/{aid}/policy", data=form).status_code == 303
        with gateway.client() as api:
            stored = api.get(f"/v1/mesh/agents/{aid}/policies/cost").json()
        assert (stored["action_on_breach"], stored["unpriced_output_usd_per_1m"]) == ("kill", None)
