"""The read API's JSON: ``_queries`` results rendered for the wire, and nowhere else.

Money is ``_protocol.money`` (decimal strings, at least two places), instants are
``_protocol.iso`` (``2026-11-28T23:00:00Z``). Key order is part of the documented
answers (``docs/protocol.md``), so each body is built in one place, field by field.
"""

from __future__ import annotations

from typing import Any

from ..._protocol import iso, money
from .._commands import shown_policy
from .._auth import Principal
from .._redact import redact_policy
from .._results import Agent, AgentCosts, AgentPage, AgentPolicy, Breakdown, ClientBlock, EventPage, IntentCost, Totals


def totals(t: Totals) -> dict[str, Any]:
    return {"cost_usd": money(t.cost_pico), "llm_calls": t.llm_calls, "tokens_in": t.tokens_in, "tokens_out": t.tokens_out,
            "heartbeats": t.heartbeats, "intents": t.intents}


def agent_summary(agent: Agent, window: str) -> dict[str, Any]:
    """One agent of ``GET /v1/mesh/agents`` (``window`` picks ``cost_period`` / ``intents_period``)."""
    period, today = agent.windows[window].totals, agent.windows["day"].totals
    return {
        "address_id": agent.address_id, "address": agent.address, "display_name": agent.display_name, "org": agent.org,
        "state": agent.state, "health_status": agent.health, "last_heartbeat_at": iso(agent.last_heartbeat_at),
        "created_at": iso(agent.created_at), "window": window, "intents_period": period.intents,
        "cost_period": money(period.cost_pico), "intents_today": today.intents, "cost_today": money(today.cost_pico),
        "timezone": agent.timezone, "metadata": {}, "policies": [p.to_wire() for p in agent.policies],
        **({"client_block": client_block(agent.client_block)} if agent.client_block is not None else {}),
    }


def client_block(b: ClientBlock) -> dict[str, Any]:
    """A current client-side stop: ``{policy, limit, spent, resets_at, at, source}`` (see ``docs/protocol.md``)."""
    return {"policy": b.policy, "limit": money(b.limit) if b.limit is not None else None,
            "spent": money(b.spent) if b.spent is not None else None, "resets_at": iso(b.resets_at), "at": iso(b.at),
            "source": b.source}


def agent_list(page: AgentPage, *, paged: bool) -> dict[str, Any]:
    """``GET /v1/mesh/agents``; ``paged`` (any of limit / offset / q / sort given) adds ``page``."""
    s, window = page.summary, page.query.window
    body: dict[str, Any] = {
        "ok": True, "window": window, "agents": [agent_summary(a, window) for a in page.agents],
        "summary": {"total": s.total, "healthy": s.healthy, "degraded": s.degraded, "unreachable": s.unreachable,
                    "killed": s.killed, "unknown": s.unknown, "blocked": s.blocked, "paused": s.paused,
                    "cost_period": money(s.cost_pico), "intents_period": s.intents},
    }
    if paged:
        q = page.query
        body["page"] = {"total": page.matching, "offset": q.offset, "limit": q.limit, "next_offset": page.next_offset,
                        "sort": q.sort, "order": "desc" if q.reverse else "asc", "q": q.q}
    return body


def agent_detail(agent: Agent) -> dict[str, Any]:
    """``GET /v1/mesh/agents/{id}``: the summary plus the current windows and the (redacted) policy,
    both at the top level and under ``"agent"`` (AXME's SDK reads the latter)."""
    out = agent_summary(agent, "day")
    out["windows"] = {w: {"start": iso(v.start), "end": iso(v.end), **totals(v.totals)} for w, v in agent.windows.items()}
    out["policy"] = redact_policy(agent.policy.to_wire()) if agent.policy else None  # URLs in full: only the policy endpoint
    return {"ok": True, "agent": out, **out}


def _breakdown(rows: list[Breakdown], name: str) -> list[dict[str, Any]]:
    return [{name: r.key, **totals(r.totals)} for r in rows]


def agent_costs(c: AgentCosts) -> dict[str, Any]:
    return {
        "ok": True, "address_id": c.address_id, "address": c.address, "window": c.window, "timezone": c.timezone,
        "from": iso(c.start), "to": iso(c.end), "totals": totals(c.totals),
        "series": [{"start": iso(b.start), "end": iso(b.end), **totals(b.totals)} for b in c.series],
        "by_intent": _breakdown(c.by_intent, "intent_id"), "by_model": _breakdown(c.by_model, "model"),
    }


def intent(i: IntentCost) -> dict[str, Any]:
    return {
        "ok": True, "intent_id": i.intent_id, "agent": i.agent, "address_id": i.address_id, "cost_usd": money(i.totals.cost_pico),
        "llm_calls": i.totals.llm_calls, "tokens_in": i.totals.tokens_in, "tokens_out": i.totals.tokens_out,
        "created_at": iso(i.created_at), "last_seen_at": iso(i.last_seen_at), "labels": i.labels,
    }


def event_page(page: EventPage) -> dict[str, Any]:
    listed = [{"id": e.id, "type": e.type, "agent": e.agent, "address_id": e.address_id, "created_at": iso(e.created_at),
               "data": e.data} for e in page.events]
    return {"ok": True, "events": listed, "next_after_id": page.next_after_id}


def policy(found: AgentPolicy, who: Principal) -> dict[str, Any]:
    """``GET …/policies/cost``: webhook URLs in full for org admins only (``_commands.shown_policy``)."""
    assert found.policy is not None
    shown = shown_policy(who, found.address, found.policy.to_wire()) or {}
    return {"ok": True, "address_id": found.address_id, "address": found.address, "policy": shown, **shown}
