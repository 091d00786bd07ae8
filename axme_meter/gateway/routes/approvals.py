"""Approval requests over HTTP: the admin API, the signed email links and the Slack interactivity callback.

- ``GET /v1/mesh/approvals`` (``state``, ``agent``, ``limit``), ``GET /v1/mesh/approvals/{id}``,
  ``POST /v1/mesh/approvals/{id}/approve|deny``: admin keys, within their scope (``_commands``).
- ``GET /v1/approvals/links/{token}`` shows a confirmation page and decides nothing (mail scanners
  prefetch links); its form's ``POST`` to the same URL decides, once.
- ``POST /v1/slack/interactions``: Slack's button callbacks, signature-checked (``_slack``).

Every refusal is a JSON error body (``_errors``) with a 4xx status, and changes nothing.
"""

from __future__ import annotations

import html

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

from .. import _commands, _slack
from .._alerts import Alert
from .._approval_tokens import Claims
from .._errors import ApiError
from ._common import gateway, principal

_MAX_CALLBACK_BYTES = 64 * 1024


async def list_approvals(request: Request) -> JSONResponse:
    gw = gateway(request)
    who = principal(request)
    q = request.query_params
    raw_limit = q.get("limit") or "100"
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        raise ApiError(422, "validation_error", "limit: expected an integer from 1 to 1000", {"field": "limit"})
    answer = await run_in_threadpool(lambda: _commands.list_approvals(gw.engine, who, gw.clock.now(), state=q.get("state") or None,
                                                                       agent=q.get("agent") or None, limit=int(raw_limit)))
    return JSONResponse(answer)


async def get_approval(request: Request) -> JSONResponse:
    gw = gateway(request)
    return JSONResponse(await run_in_threadpool(_commands.get_approval, gw.engine, principal(request),
                                                request.path_params["approval_id"], gw.clock.now()))


async def decide_approval(request: Request) -> JSONResponse:
    """``POST …/approve`` or ``…/deny``; the approver in the events is the key's prefix."""
    gw = gateway(request)
    who = principal(request)
    decision = request.url.path.rsplit("/", 1)[-1]
    return JSONResponse(await run_in_threadpool(_commands.decide_approval, gw.engine, who, request.path_params["approval_id"],
                                                decision, gw.clock.now()))


# -- email links -----------------------------------------------------------------------------------

def _claims(request: Request) -> Claims:
    gw = gateway(request)
    signer = gw.dispatcher.approvals
    assert signer is not None
    return signer.verify(request.path_params["token"], int(gw.clock.now().timestamp()), "email")


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                        "<meta name='robots' content='noindex'></head><body style='font-family:sans-serif;max-width:40em;"
                        f"margin:2em auto'><h1>{html.escape(title)}</h1>{body}</body></html>", status_code=status,
                        headers={"cache-control": "no-store", "referrer-policy": "no-referrer"})


async def link_page(request: Request) -> HTMLResponse:
    """The confirmation page: what the link would do, and a button that POSTs it. Decides nothing."""
    gw = gateway(request)
    claims = _claims(request)
    approval = await run_in_threadpool(_commands.approval_for_token, gw.engine, claims.org, claims.approval_id)
    now = int(gw.clock.now().timestamp())
    if approval.state != "pending":
        from .._approvals import decided_error
        raise decided_error(approval)
    if approval.shown_state(now) == "expired":
        raise ApiError(410, "approval_expired", f"approval {approval.id} expired (its window ended); nothing was changed",
                       {"approval_id": approval.id})
    verb = "Approve" if claims.decision == "approve" else "Deny"
    effect = ("raises the limit and resumes the agent" if claims.decision == "approve" else "keeps the agent paused")
    body = (f"<p>{html.escape(approval.summary())}</p><p>{verb} as <b>{html.escape(claims.to)}</b>: this {effect}.</p>"
            f"<form method='post'><button type='submit' name='confirm' value='1'>{verb}</button></form>")
    return _page(f"{verb} more budget for {approval.address}?", body)


async def link_decide(request: Request) -> HTMLResponse:
    """The form's POST: decide once, as the address the link was sent to."""
    gw = gateway(request)
    claims = _claims(request)
    answer = await run_in_threadpool(_commands.decide_by_token, gw.engine, claims.org, claims.approval_id, claims.decision,
                                     f"email:{claims.to}", "email", gw.clock.now())
    approval = answer["approval"]
    return _page(f"Approval {approval['state']}", f"<p>{html.escape(approval['agent'])}: {html.escape(approval['policy'])} "
                 f"request {html.escape(approval['id'])} was {html.escape(approval['state'])}; the agent is now "
                 f"{html.escape(answer['agent_state'])}.</p>")


# -- Slack -----------------------------------------------------------------------------------------

async def slack_interaction(request: Request) -> JSONResponse:
    """A click on Approve / Deny in Slack: signature and freshness checked before anything is read."""
    gw = gateway(request)
    body = await request.body()
    if len(body) > _MAX_CALLBACK_BYTES:
        raise ApiError(413, "payload_too_large", f"body larger than {_MAX_CALLBACK_BYTES} bytes")
    now = gw.clock.now()
    _slack.verify(gw.settings.slack_signing_secret, request.headers, body, int(now.timestamp()))
    click = _slack.parse_action(body)
    signer = gw.dispatcher.approvals
    assert signer is not None
    claims = signer.verify(click.value, int(now.timestamp()), "slack")
    if claims.decision != click.decision:
        raise ApiError(403, "invalid_token", "the button's value is for another decision; nothing was changed",
                       {"field": "actions.0.value"})
    answer = await run_in_threadpool(_commands.decide_by_token, gw.engine, claims.org, claims.approval_id, click.decision,
                                     f"slack:{click.user}", "slack", now)
    approval = answer["approval"]
    update = _slack.decided_message(approval, click.user)
    if click.response_url:  # replace the buttons with the outcome, like any Slack app (delivered in the background)
        gw.dispatcher.submit([Alert(claims.org, approval["address_id"], approval["agent"], approval["policy"], "decision",
                                    approval["limit"], approval["spent"], approval["resets_at"],
                                    {"slack_webhook": click.response_url}, kind="slack_update", details=update)])
    return JSONResponse({"ok": True, **update, "approval": approval, "agent_state": answer["agent_state"]})
