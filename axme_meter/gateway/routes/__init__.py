"""The route table: every path of the wire protocol, wired explicitly (Starlette style)."""

from __future__ import annotations

from starlette.routing import Route

from . import agents, approvals, grants, heartbeat, intents, policies, prices, system

_AGENT = "/v1/mesh/agents/{address_id}"


def routes() -> list[Route]:
    return [
        Route("/healthz", system.healthz, methods=["GET"]),
        Route("/metrics", system.metrics, methods=["GET"]),
        Route("/openapi.json", system.openapi, methods=["GET"]),
        Route("/v1/keys", system.create_key, methods=["POST"]),
        Route("/v1/keys", system.list_keys, methods=["GET"]),
        Route("/v1/keys/{prefix}", system.revoke_key, methods=["DELETE"]),
        Route("/v1/prices", prices.get_prices, methods=["GET"]),
        Route("/v1/prices", prices.load_prices, methods=["POST"]),
        Route("/v1/prices/{name}", prices.unload_prices, methods=["DELETE"]),
        Route("/v1/mesh/heartbeat", heartbeat.heartbeat, methods=["POST"]),
        Route("/v1/mesh/grants", grants.create_grants, methods=["POST"]),
        Route("/v1/mesh/intents", intents.create_intent, methods=["POST"]),
        Route("/v1/mesh/intents/{intent_id}", intents.get_intent, methods=["GET"]),
        Route("/v1/mesh/agents", agents.list_agents, methods=["GET"]),
        Route(_AGENT, agents.get_agent, methods=["GET"]),
        Route(f"{_AGENT}/costs", agents.agent_costs, methods=["GET"]),
        Route(f"{_AGENT}/pause", agents.change_state, methods=["POST"]),
        Route(f"{_AGENT}/resume", agents.change_state, methods=["POST"]),
        Route(f"{_AGENT}/kill", agents.change_state, methods=["POST"]),
        Route(f"{_AGENT}/policies/cost", policies.put_policy, methods=["PUT"]),
        Route(f"{_AGENT}/policies/cost", policies.get_policy, methods=["GET"]),
        Route(f"{_AGENT}/policies/cost", policies.delete_policy, methods=["DELETE"]),
        Route("/v1/mesh/events", agents.list_events, methods=["GET"]),
        Route("/v1/mesh/approvals", approvals.list_approvals, methods=["GET"]),
        Route("/v1/mesh/approvals/{approval_id}", approvals.get_approval, methods=["GET"]),
        Route("/v1/mesh/approvals/{approval_id}/approve", approvals.decide_approval, methods=["POST"]),
        Route("/v1/mesh/approvals/{approval_id}/deny", approvals.decide_approval, methods=["POST"]),
        Route("/v1/approvals/links/{token}", approvals.link_page, methods=["GET"]),
        Route("/v1/approvals/links/{token}", approvals.link_decide, methods=["POST"]),
        Route("/v1/slack/interactions", approvals.slack_interaction, methods=["POST"]),
    ]
