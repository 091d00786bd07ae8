"""The OpenTelemetry bridge: GenAI metrics from metered calls, read with the SDK's in-memory reader."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.metrics", reason="opentelemetry-sdk is not installed (pip install 'axme_meter[otel]' opentelemetry-sdk)")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402

import axme_meter  # noqa: E402
from axme_meter import _otel  # noqa: E402
from axme_meter.demo._simulator import Simulator  # noqa: E402

AGENT = "agent://acme/production/otel-agent"


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    _otel.instrument(provider, include_intent=True)
    yield memory
    _otel.uninstrument()
    provider.shutdown()


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    found: list[Any] = []
    if data is None:  # nothing recorded at all
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def test_token_usage_histogram_and_cost_counter(reader: InMemoryMetricReader, simulator: Simulator) -> None:
    client = axme_meter.OpenAI(base_url=simulator.base_url, api_key="sk-sim", max_retries=0)
    with axme_meter.agent(AGENT), axme_meter.intent("int_otel"):
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        client.embeddings.create(model="text-embedding-3-small", input="refund")
    spent = axme_meter.spend()

    tokens = _points(reader, _otel.TOKEN_USAGE)
    by_type = {(p.attributes["gen_ai.token.type"], p.attributes["gen_ai.operation.name"]): p for p in tokens}
    chat_in, chat_out = by_type[("input", "chat")], by_type[("output", "chat")]
    assert chat_in.count == 3 and chat_out.count == 3
    embed_in = by_type[("input", "embeddings")]
    assert chat_in.sum + embed_in.sum == spent.tokens_in
    assert chat_out.sum == spent.tokens_out
    assert ("output", "embeddings") not in by_type  # embeddings produce no output tokens
    attrs = chat_in.attributes
    assert attrs["gen_ai.provider.name"] == "openai" and attrs["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert attrs["axme.agent"] == AGENT and attrs["axme.intent"] == "int_otel"
    assert list(chat_in.explicit_bounds) == [float(b) for b in _otel.TOKEN_BUCKETS]

    cost = _points(reader, _otel.COST)
    assert sum(Decimal(repr(p.value)) for p in cost) == pytest.approx(spent.cost_usd, rel=Decimal("1e-9"))


def test_uninstrument_stops_emitting(reader: InMemoryMetricReader, simulator: Simulator) -> None:
    _otel.uninstrument()
    client = axme_meter.OpenAI(base_url=simulator.base_url, api_key="sk-sim", max_retries=0)
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert not _points(reader, _otel.TOKEN_USAGE)


def test_intent_left_out_by_default(simulator: Simulator) -> None:
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    _otel.instrument(provider)
    try:
        client = axme_meter.OpenAI(base_url=simulator.base_url, api_key="sk-sim", max_retries=0)
        with axme_meter.intent("int_unbounded"):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        points = _points(memory, _otel.TOKEN_USAGE)
        assert points and all("axme.intent" not in p.attributes for p in points)
    finally:
        _otel.uninstrument()
        provider.shutdown()
