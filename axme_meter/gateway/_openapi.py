"""``GET /openapi.json``, assembled from the pydantic wire models (used by the schemathesis fuzz test)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic.json_schema import models_json_schema

from ._schemas import CostPolicy, HeartbeatBatch, HeartbeatEntry, IntentCreate, KeyCreate, PriceFileUpload

_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_AGENT_PARAM = {"name": "address_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
_KEY: list[dict[str, list[str]]] = [{"apiKey": []}]


def _op(summary: str, *, body: str | dict[str, Any] | None = None, params: list[dict[str, Any]] | None = None,
        ok: str = "200") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "security": _KEY, "parameters": params or [],
                          "responses": {ok: {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}},
                                        "4XX": _ERROR}}
    if body is not None:
        schema = {"$ref": f"#/components/schemas/{body}"} if isinstance(body, str) else body
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return op


_TOKEN_PARAM = {"name": "token", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 2000}}
_APPROVAL_PARAM = {"name": "approval_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def _public(summary: str, *, html: bool = False, form: bool = False, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An operation without an API key: its credential is a signature (a signed link, Slack's signing secret)."""
    media = "text/html" if html else "application/json"
    op: dict[str, Any] = {"summary": summary, "security": [], "parameters": params or [],
                          "responses": {"200": {"description": "ok", "content": {media: {"schema": {"type": "string" if html else "object"}}}},
                                        "4XX": _ERROR}}
    if form:
        op["requestBody"] = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "properties": {"payload": {"type": "string"}}, "required": ["payload"]}}}}
    return op


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    _, defs = models_json_schema(
        [(m, "validation") for m in (HeartbeatEntry, HeartbeatBatch, IntentCreate, CostPolicy, KeyCreate, PriceFileUpload)],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Error"] = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "object"}}}}}
    window = {"name": "window", "in": "query", "required": False, "schema": {"type": "string", "enum": ["hour", "day", "week", "month"]}}
    agent = "/v1/mesh/agents/{address_id}"
    heartbeat_body = {"anyOf": [{"$ref": "#/components/schemas/HeartbeatEntry"}, {"$ref": "#/components/schemas/HeartbeatBatch"}]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "axme_meter gateway", "version": "1"},
        "components": {"schemas": schemas, "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}},
        "paths": {
            "/v1/mesh/heartbeat": {"post": _op("Report spend", body=heartbeat_body)},
            "/v1/mesh/intents": {"post": _op("Register an intent", body="IntentCreate", ok="201")},
            "/v1/mesh/intents/{intent_id}": {"get": _op("Intent cost", params=[{**_AGENT_PARAM, "name": "intent_id"}])},
            "/v1/mesh/agents": {"get": _op("List agents (every one; any paging parameter pages, searches, sorts)", params=[
                window, {"name": "health", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "offset", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
                {"name": "q", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 200}},
                {"name": "sort", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": ["name", "cost", "last_heartbeat", "state"]}},
                {"name": "order", "in": "query", "required": False, "schema": {"type": "string", "enum": ["asc", "desc"]}}])},
            agent: {"get": _op("Agent detail", params=[_AGENT_PARAM])},
            f"{agent}/costs": {"get": _op("Agent costs", params=[_AGENT_PARAM, window,
                {"name": "from", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}},
                {"name": "to", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}}])},
            f"{agent}/policies/cost": {
                "put": _op("Set cost policy", body="CostPolicy", params=[_AGENT_PARAM]),
                "get": _op("Get cost policy", params=[_AGENT_PARAM]),
                "delete": _op("Delete cost policy", params=[_AGENT_PARAM]),
            },
            f"{agent}/pause": {"post": _op("Pause", params=[_AGENT_PARAM])},
            f"{agent}/resume": {"post": _op("Resume", params=[_AGENT_PARAM])},
            f"{agent}/kill": {"post": _op("Kill", params=[_AGENT_PARAM])},
            "/v1/keys": {"post": _op("Create a key (admin, within its own scope)", body="KeyCreate", ok="201"),
                         "get": _op("List keys by prefix (admin)")},
            "/v1/keys/{prefix}": {"delete": _op("Revoke a key (admin)", params=[{**_AGENT_PARAM, "name": "prefix"}])},
            "/v1/prices": {"get": _op("The effective price table and its pricing_version (ETag; If-None-Match gives 304)"),
                           "post": _op("Load a price file (super-admin)", body="PriceFileUpload", ok="201")},
            "/v1/prices/{name}": {"delete": _op("Unload a price file (super-admin)", params=[{**_AGENT_PARAM, "name": "name"}])},
            "/v1/mesh/approvals": {"get": _op("Approval requests (admin), newest first", params=[
                {"name": "state", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": ["pending", "approved", "denied", "expired"]}},
                {"name": "agent", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}])},
            "/v1/mesh/approvals/{approval_id}": {"get": _op("One approval request (admin)", params=[_APPROVAL_PARAM])},
            "/v1/mesh/approvals/{approval_id}/approve": {"post": _op(
                "Approve: raise the breached limit until its window ends and resume the agent (admin)", params=[_APPROVAL_PARAM])},
            "/v1/mesh/approvals/{approval_id}/deny": {"post": _op("Deny: the agent stays paused (admin)",
                                                                  params=[_APPROVAL_PARAM])},
            "/v1/approvals/links/{token}": {
                "get": _public("The confirmation page of an emailed approve/deny link (decides nothing)", html=True,
                               params=[_TOKEN_PARAM]),
                "post": _public("Decide through an emailed link (once; the link's signature is the credential)", html=True,
                                params=[_TOKEN_PARAM])},
            "/v1/slack/interactions": {"post": _public(
                "Slack's Approve/Deny button callback (X-Slack-Signature v0, X-Slack-Request-Timestamp within 5 min)",
                form=True)},
            "/v1/mesh/events": {"get": _op("Events", params=[
                {"name": "agent", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "after_id", "in": "query", "required": False, "schema": {"type": "integer"}},
                {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}}])},
        },
    }
