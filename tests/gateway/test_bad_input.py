"""Bad input: 4xx with a machine-readable error naming the field, nothing stored, the server keeps serving."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from support.gateway_helpers import entry, path
from support.gateway_process import GatewayProcess

A = "agent://acme/production/bad-input"


def _with_metrics(**metrics: Any) -> dict[str, Any]:
    body = entry(A, "0.01")
    body["metrics"].update(metrics)
    return body


def _raw_cost(literal: str) -> bytes:
    return json.dumps(entry(A, "0.01")).replace('"cost_usd": "0.01"', f'"cost_usd": {literal}', 1).encode()


CASES: list[tuple[str, Any, int, str, str]] = [
    # (name, body (dict → JSON, bytes → raw), status, error code, field)
    ("malformed json", b'{"id": "x", ', 400, "invalid_json", ""),
    ("not an object", b"[1, 2]", 422, "validation_error", ""),
    ("string body", b'"hello"', 422, "validation_error", ""),
    ("unknown top-level field", {**entry(A), "colour": "red"}, 422, "validation_error", "colour"),
    ("unknown metrics field", _with_metrics(dollars=1), 422, "validation_error", "metrics.dollars"),
    ("negative cost", _with_metrics(cost_usd="-0.01"), 422, "validation_error", "metrics.cost_usd"),
    ("NaN literal", _raw_cost("NaN"), 422, "validation_error", "metrics.cost_usd"),
    ("Infinity literal", _raw_cost("Infinity"), 422, "validation_error", "metrics.cost_usd"),
    ("-Infinity literal", _raw_cost("-Infinity"), 422, "validation_error", "metrics.cost_usd"),
    ("overflowing float", _raw_cost("1e999"), 422, "validation_error", "metrics.cost_usd"),
    ("NaN string", _with_metrics(cost_usd="NaN"), 422, "validation_error", "metrics.cost_usd"),
    ("sNaN string", _with_metrics(cost_usd="sNaN"), 422, "validation_error", "metrics.cost_usd"),
    ("huge exponent string", _with_metrics(cost_usd="1e999999999"), 422, "validation_error", "metrics.cost_usd"),
    ("over $10,000 for one call", _with_metrics(cost_usd="10000.000000000001"), 422, "validation_error", "metrics.cost_usd"),
    ("over $10,000 with no calls", _with_metrics(cost_usd="10000.01", llm_calls=0), 422, "validation_error", "metrics.cost_usd"),
    ("over the per-entry storage bound", _with_metrics(cost_usd="1000000.01", llm_calls=1000), 422, "validation_error",
     "metrics.cost_usd"),
    ("word cost", _with_metrics(cost_usd="ten"), 422, "validation_error", "metrics.cost_usd"),
    ("boolean cost", _with_metrics(cost_usd=True), 422, "validation_error", "metrics.cost_usd"),
    ("long cost string", _with_metrics(cost_usd="0." + "1" * 100), 422, "validation_error", "metrics.cost_usd"),
    ("negative calls", _with_metrics(llm_calls=-1), 422, "validation_error", "metrics.llm_calls"),
    ("fractional tokens", _with_metrics(tokens_in=1.5), 422, "validation_error", "metrics.tokens_in"),
    ("string tokens", _with_metrics(tokens_out="12"), 422, "validation_error", "metrics.tokens_out"),
    ("huge int literal", _raw_cost("9" * 5000), 400, "invalid_json", ""),
    ("model cost over $10,000 per call", {**entry(A), "by_model": {"m": {"cost_usd": "20000", "llm_calls": 1}}}, 422,
     "validation_error", "by_model.m.cost_usd"),
    ("address without scheme", {**entry(A), "agent": "acme/production/x"}, 422, "validation_error", "agent"),
    ("address with one part", {**entry(A), "agent": "agent://acme"}, 422, "validation_error", "agent"),
    ("address with four parts", {**entry(A), "agent": "agent://a/b/c/d"}, 422, "validation_error", "agent"),
    ("address with spaces", {**entry(A), "agent": "agent://acme/prod/my agent"}, 422, "validation_error", "agent"),
    ("address not a string", {**entry(A), "agent": 42}, 422, "validation_error", "agent"),
    ("id too long", {**entry(A), "id": "x" * 201}, 422, "validation_error", "id"),
    ("id with control char", {**entry(A), "id": "a\nb"}, 422, "validation_error", "id"),
    ("empty batch", {"heartbeats": []}, 422, "validation_error", "heartbeats"),
    ("batch over 1000", {"heartbeats": [entry(A, id=f"big{i}") for i in range(1001)]}, 422, "validation_error", "heartbeats"),
    ("batch plus extra field", {"heartbeats": [entry(A)], "extra": 1}, 422, "validation_error", "extra"),
    ("batch not a list", {"heartbeats": {"id": "x"}}, 422, "validation_error", "heartbeats"),
    ("bad client block", {"heartbeats": [entry(A)], "blocks": [{"agent": A, "source": "moon"}]}, 422, "validation_error",
     "blocks.0.source"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json", ""),
    ("over 1 MiB", {"heartbeats": [{**entry(A), "pricing_version": "v" * 300} for _ in range(2500)]}, 413, "payload_too_large", ""),
    ("invalid utf-8", b'{"id": "\xff\xfe"}', 400, "invalid_json", ""),
]


def _count(http: httpx.Client) -> int:
    resp = http.get(f"/v1/mesh/agents/{path(A)}")
    return 0 if resp.status_code == 404 else int(resp.json()["windows"]["day"]["heartbeats"])


@pytest.mark.parametrize(("name", "body", "status", "code", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_heartbeats(gateway: GatewayProcess, name: str, body: Any, status: int, code: str, field: str) -> None:
    with gateway.client() as http:
        before = _count(http)
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        resp = http.post("/v1/mesh/heartbeat", content=content, headers={"content-type": "application/json"})
        assert resp.status_code == status, resp.text[:500]
        error = resp.json()["error"]
        assert error["code"] == code and error["message"]
        if code == "validation_error":
            assert error["details"]["field"] == field
        assert _count(http) == before  # nothing stored
        assert http.get("/healthz").status_code == 200


def test_a_bad_entry_in_a_batch_is_refused_alone(gateway: GatewayProcess) -> None:
    """Each entry of a batch is validated on its own: the good ones are recorded, the bad one gets its reason."""
    with gateway.client() as http:
        before = _count(http)
        good = entry(A, "0.01")
        resp = http.post("/v1/mesh/heartbeat", json={"heartbeats": [
            good, {**entry(A), "id": "bad-amount", "metrics": {"cost_usd": "-1"}}, "not an entry", {**entry(A), "agent": 42}]})
        assert resp.status_code == 200, resp.text
        results = resp.json()["results"]
        assert [r["status"] for r in results] == ["recorded", "error", "error", "error"]
        assert results[0] == {"id": good["id"], "status": "recorded", "error": None}
        assert results[1]["id"] == "bad-amount"
        assert results[1]["error"]["code"] == "validation_error"
        assert results[1]["error"]["field"] == "heartbeats.1.metrics.cost_usd" and "negative" in results[1]["error"]["message"]
        assert results[2] == {"id": None, "status": "error", "error": {"code": "validation_error", "field": "heartbeats.2",
                                                                      "message": "heartbeats.2: must be a JSON object"}}
        assert results[3]["error"]["field"] == "heartbeats.3.agent"
        assert _count(http) == before + 1  # only the good entry was booked


def test_spend_aggregated_over_an_outage_has_no_per_entry_cap(gateway: GatewayProcess) -> None:
    """The sanity limit is per call: $12,500 over 5 calls is real money, recorded to the cent."""
    agent = "agent://acme/production/outage-agent"
    with gateway.client() as http:
        resp = http.post("/v1/mesh/heartbeat", json={"heartbeats": [entry(agent, "12500.000000000001", calls=5)]})
        assert resp.status_code == 200 and resp.json()["results"][0]["status"] == "recorded", resp.text
        assert Decimal(http.get(f"/v1/mesh/agents/{path(agent)}").json()["cost_today"]) == Decimal("12500.000000000001")


def test_chunked_oversize_body_is_refused_without_content_length(gateway: GatewayProcess) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"heartbeats": ['
        for _ in range(4000):
            yield json.dumps(entry(A, "0.01")).encode() + b","
        yield b"{}]}"

    with gateway.client() as http:
        resp = http.post("/v1/mesh/heartbeat", content=chunks(), headers={"content-type": "application/json"})
        assert resp.status_code == 413 and resp.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(("method", "url", "body", "field"), [
    ("POST", "/v1/mesh/intents", {"agent": "agent://acme"}, "agent"),
    ("POST", "/v1/mesh/intents", {"agent": A, "intent_id": ""}, "intent_id"),
    ("POST", "/v1/mesh/intents", {"agent": A, "labels": {"k": 1}}, "labels.k"),
    ("POST", "/v1/mesh/intents", {"agent": A, "priority": 1}, "priority"),
    ("GET", f"/v1/mesh/agents/{path(A)}/costs?window=year", None, "window"),
    ("GET", f"/v1/mesh/agents/{path(A)}/costs?from=yesterday", None, "from"),
    ("GET", f"/v1/mesh/agents/{path(A)}/costs?from=2026-11-29T00:00:00Z&to=2026-11-28T00:00:00Z", None, "from"),
    ("GET", "/v1/mesh/agents?window=fortnight", None, "window"),
    ("GET", "/v1/mesh/events?limit=many", None, "limit"),
    ("POST", "/v1/keys", {"org": "bad org!"}, "org"),
])
def test_other_bad_requests_are_422(gateway: GatewayProcess, method: str, url: str, body: Any, field: str) -> None:
    with gateway.client() as http:
        http.post("/v1/mesh/heartbeat", json=entry(A))  # make sure the agent exists for the read routes
        resp = http.request(method, url, json=body) if body is not None else http.request(method, url)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["details"]["field"] == field


def test_unknown_routes_and_methods_are_json(gateway: GatewayProcess) -> None:
    with gateway.client() as http:
        missing = http.get("/v1/mesh/nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        wrong = http.delete("/v1/mesh/heartbeat")
        assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
        assert http.get("/v1/mesh/agents/addr_doesnotexist").status_code == 404
        assert http.get("/v1/mesh/agents/%FF%FE").status_code == 404
