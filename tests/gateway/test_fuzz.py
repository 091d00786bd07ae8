"""Fuzz the running gateway: schemathesis against /openapi.json, plus hypothesis-mutated heartbeats. Zero 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.gateway_helpers import entry
from support.gateway_process import GatewayProcess

schemathesis = pytest.importorskip("schemathesis", reason="the fuzz test needs schemathesis (pip install schemathesis)")

FUZZ_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("fuzz"), clock="2026-11-28T12:00:00Z")
    with gw:
        with gw.client() as http:  # some state for the read routes to find
            http.post("/v1/mesh/heartbeat", json=entry("agent://acme/production/fuzzed", "1", intent="int_fuzz"))
        yield gw
        assert gw.process is not None and gw.process.poll() is None, "the gateway died during fuzzing"


def _operations() -> list[tuple[str, str]]:
    from axme_meter.gateway._openapi import openapi_document

    return [(method.upper(), route) for route, methods in openapi_document()["paths"].items() for method in methods]


@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize(("method", "route"), _operations())
def test_schemathesis_finds_no_server_error(fuzz_gateway: GatewayProcess, method: str, route: str, mode: str) -> None:
    """Each operation of the served /openapi.json, with valid (positive) and invalid (negative) generated requests.

    Driven through ``as_strategy`` + hypothesis rather than schemathesis' pytest plugin, which does not load
    under this pytest version."""
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(f"{fuzz_gateway.url}/openapi.json")
    operation = next(r.ok() for r in schema.get_all_operations() if r.ok().method.upper() == method and r.ok().path == route)
    strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE)

    @FUZZ_SETTINGS
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=fuzz_gateway.url, headers={"x-api-key": fuzz_gateway.admin_key}, timeout=30)
        assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
        if response.status_code >= 400:
            assert "code" in response.json()["error"]

    run()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
FIELDS = ["id", "agent", "intent_id", "status", "window_start", "metrics", "by_model", "pricing_version", "extra"]
METRICS = ["cost_usd", "llm_calls", "tokens_in", "tokens_out", "cached_tokens", "avg_latency_ms", "bogus"]


@st.composite
def mutated_batches(draw: st.DrawFn) -> Any:
    """Valid entries with one field (top level or in metrics) replaced by arbitrary JSON."""
    base = entry("agent://acme/production/fuzzed", "0.01", id=f"fz_{draw(st.integers(0, 10**9))}")
    if draw(st.booleans()):
        base[draw(st.sampled_from(FIELDS))] = draw(json_values)
    else:
        base["metrics"][draw(st.sampled_from(METRICS))] = draw(json_values)
    return draw(st.sampled_from([base, {"heartbeats": [base]}, {"heartbeats": base}, [base], draw(json_values)]))


@FUZZ_SETTINGS
@given(body=mutated_batches())
def test_mutated_heartbeats_never_5xx(fuzz_gateway: GatewayProcess, body: Any) -> None:
    with httpx.Client(base_url=fuzz_gateway.url, headers={"x-api-key": fuzz_gateway.admin_key}, timeout=30) as http:
        resp = http.post("/v1/mesh/heartbeat", content=json.dumps(body, allow_nan=True))
    assert resp.status_code < 500, resp.text
    assert resp.status_code in (200, 400, 413, 422, 429), resp.text
