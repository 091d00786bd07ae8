"""Overview, agent page, their live fragments, and the policy / state forms (admin keys only)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from .. import _commands
from .._auth import Principal
from .._errors import ApiError
from .._redact import redact_policy
from .._results import SORTS
from . import _actions, _breakdowns, _chart, _data
from ._web import checked_form, forbidden, gw, read, render, to_login, who_is

# -- overview --------------------------------------------------------------------------------------

def _listing(request: Request, who: Principal) -> _data.Listing:
    """The overview's URL parameters; anything unusable falls back to the default (a page, never an error)."""
    q = request.query_params
    sort = q.get("sort", "")
    order = q.get("order", "")
    raw_page = q.get("page", "")
    page = int(raw_page) if raw_page.isascii() and raw_page.isdigit() and 0 < int(raw_page) <= 10**6 else 1
    return _data.Listing(q=q.get("q", "")[:200], org=q.get("org", "")[:128] if who.org == "*" else "",
                         sort=sort if sort in SORTS else _data.DEFAULT_SORT,
                         order=order if order in ("asc", "desc") else "", page=page)


def _overview_context(data: _data.Overview) -> dict[str, Any]:
    listing = data.listing

    def url(**changes: Any) -> str:
        return "/dashboard?" + urlencode(listing.params(**changes))

    def sort_url(key: str) -> str:
        """The column header's link: sort by ``key``; on the current sort, flip its direction."""
        if key != listing.sort:
            return url(sort=key, order="", page=1)
        return url(order="asc" if data.page.query.reverse else "desc", page=1)

    return {"agents": data.agents, "orgs": data.orgs, "total_agents": data.total_agents, "page": data.page,
            "pages": data.pages, "listing": listing, "totals": data.page.matching_cost, "url": url, "sort_url": sort_url}


async def overview(request: Request) -> Response:
    session, who = await who_is(request)
    if who is None:
        return to_login()
    listing = _listing(request, who)
    data = await read(request, _data.overview, who.org, gw(request).clock.now(), listing)
    live = "/dashboard/live/overview?" + urlencode(listing.params())
    return render(request, "overview.html", session, who=who, q=listing.q, org=listing.org, live=live, **_overview_context(data))


async def overview_fragment(request: Request) -> Response:
    _session, who = await who_is(request)
    if who is None:
        return PlainTextResponse("log in again", status_code=401)
    data = await read(request, _data.overview, who.org, gw(request).clock.now(), _listing(request, who))
    return render(request, "_overview_rows.html", None, who=who, **_overview_context(data))


# -- agent page ------------------------------------------------------------------------------------

def _view(request: Request) -> str:
    view = request.query_params.get("view", "day")
    return view if view in _data.VIEWS else "day"


async def _agent_context(request: Request, who: Principal) -> dict[str, Any] | None:
    ref = request.path_params["address_id"]
    view = _view(request)
    intent = request.query_params.get("intent") or None
    page = await read(request, _data.agent_page, who.org, ref, gw(request).clock.now(), view, intent)
    if page is None:
        return None
    agent = page.agent
    params = {"view": view, **({"intent": intent} if intent else {})}
    return {
        "agent": agent, "view": page.view, "bucket": page.bucket, "costs": page.costs, "intents": page.intents,
        "selected_intent": page.selected_intent, "events": page.events,
        # the form shows what every read shows: webhook URLs redacted (saving them unchanged keeps the stored ones)
        "policy": redact_policy(agent.policy.to_wire()) if agent.policy else None,
        "chart": _chart.build(page.costs.series, page.bucket, agent.timezone, _band(page)),
        "approvals": page.approvals,
        "rest": _breakdowns.rest_of(page.costs, len(page.intents)),
        "live": f"/dashboard/live/agents/{agent.address_id}?" + urlencode(params), "who": who,
    }


def _band(page: _data.AgentPage) -> list[tuple[int, int]] | None:
    """The day chart's spend-rate band: each hour's baseline up to the alert level (the policy's multiple)."""
    if not page.baselines:
        return None
    raw = getattr(page.agent.policy, "alert_on_spend_rate_multiple", None) if page.agent.policy else None
    multiple = Decimal(str(raw)) if raw is not None else Decimal(1)
    return [(b.value, int(multiple * b.value)) for b in page.baselines]


async def agent(request: Request) -> Response:
    session, who = await who_is(request)
    if who is None:
        return to_login()
    page = await _agent_context(request, who)
    if page is None:
        return render(request, "not_found.html", session, status=404, who=who)
    saved = request.query_params.get("saved") == "1"
    return render(request, "agent.html", session, values=_actions.form_values(page["policy"]), errors={}, saved=saved,
                  choices=_actions.CHOICES, **page)


async def agent_fragment(request: Request) -> Response:
    _session, who = await who_is(request)
    if who is None:
        return PlainTextResponse("log in again", status_code=401)
    page = await _agent_context(request, who)
    if page is None:
        return PlainTextResponse("not found", status_code=404)
    return render(request, "_agent_live.html", None, **page)


async def _admin_form(request: Request, needs: str) -> tuple[Any, Any, Principal | None, Response | None]:
    """The shared gate of every admin form: CSRF token, a logged-in key, and an admin one.

    Returns (form, session, principal, None), or a refusal response as the last item.
    """
    form, session, ok = await checked_form(request)
    if not ok:
        return form, session, None, forbidden()
    _s, who = await who_is(request)
    if who is None:
        return form, session, None, to_login()
    if not who.is_admin:
        return form, session, None, forbidden(f"{needs} needs an admin key")
    return form, session, who, None


async def save_policy(request: Request) -> Response:
    form, session, who, refused = await _admin_form(request, "changing a policy")
    if refused is not None or who is None:
        return refused or to_login()
    ref = request.path_params["address_id"]
    try:
        errors = await run_in_threadpool(_actions.save_policy, gw(request).engine, who, ref, form, gw(request).clock.now())
    except ApiError as exc:
        return _refusal(exc)
    page = await _agent_context(request, who)
    if page is None:
        return PlainTextResponse("not found", status_code=404)
    if errors:
        return render(request, "agent.html", session, status=422, values=_actions.form_values(None, form), errors=errors,
                      saved=False, choices=_actions.CHOICES, **page)
    # Post/Redirect/Get: a reload after saving must not submit the form again
    return RedirectResponse(f"/dashboard/agents/{page['agent'].address_id}?saved=1#policy", status_code=303)


async def change_state(request: Request) -> Response:
    form, _session, who, refused = await _admin_form(request, "pausing, resuming or killing an agent")
    if refused is not None or who is None:
        return refused or to_login()
    action = str(form.get("action") or "")
    if action not in _commands.TRANSITIONS:
        return PlainTextResponse("unknown action", status_code=400)
    ref = request.path_params["address_id"]
    try:
        await run_in_threadpool(_commands.change_state, gw(request).engine, who, ref, action, gw(request).clock.now())
    except ApiError as exc:
        return _refusal(exc)
    return RedirectResponse(f"/dashboard/agents/{ref}", status_code=303)


async def decide_approval(request: Request) -> Response:
    """Approve / Deny on the agent page: ``_commands.decide_approval``, as the API (the approver: the key's prefix)."""
    form, _session, who, refused = await _admin_form(request, "approving or denying more budget")
    if refused is not None or who is None:
        return refused or to_login()
    decision = str(form.get("decision") or "")
    if decision not in ("approve", "deny"):
        return PlainTextResponse("unknown decision", status_code=400)
    ref = request.path_params["address_id"]
    try:
        await run_in_threadpool(_commands.decide_approval, gw(request).engine, who, request.path_params["approval_id"],
                                decision, gw(request).clock.now(), channel="dashboard")
    except ApiError as exc:
        return _refusal(exc)
    return RedirectResponse(f"/dashboard/agents/{ref}#approvals", status_code=303)


def _refusal(exc: ApiError) -> Response:
    """A command's refusal as the dashboard shows it: 404 "not found", 403 with the reason."""
    if exc.status == 404:
        return PlainTextResponse("not found", status_code=404)
    return forbidden(exc.message) if exc.status == 403 else PlainTextResponse(exc.message, status_code=exc.status)
