"""An OpenAI-compatible provider (vLLM, Together, Groq, a local server...) through ``base_url``, priced
by a custom entry given with ``configure(extra_prices=...)``. The simulator plays the provider: it
echoes whatever model name it is asked for, as such servers do."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

import axme_meter
from axme_meter import _config
from axme_meter.demo._simulator import Simulator

MODEL = "meta-llama/llama-3.3-70b-instruct"
PRICE = {"id": MODEL, "source": "https://provider.example/pricing", "checked": "2026-11-28",
         "prices": [{"effective": "2025-01-01", "input": "0.59", "output": "0.79"}]}


@pytest.fixture
def priced() -> Iterator[None]:
    previous = list(_config.settings.extra_prices)
    axme_meter.configure(extra_prices=[PRICE])
    yield
    axme_meter.configure(extra_prices=previous)


def test_custom_model_is_priced_exactly(simulator: Simulator, priced: None) -> None:
    client = axme_meter.OpenAI(base_url=simulator.base_url, api_key="provider-key", max_retries=0)
    with axme_meter.agent("agent://acme/production/oss-agent"):
        reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
        list(stream)
    spent = axme_meter.spend()
    totals = spent.by_model[MODEL.lower()] if MODEL.lower() in spent.by_model else spent.by_model[MODEL]
    assert totals.calls == 2 and totals.unpriced_calls == 0 and spent.estimated_calls == 0
    assert reply.usage is not None
    expected = (Decimal(totals.tokens_in) * Decimal("0.59") + Decimal(totals.tokens_out) * Decimal("0.79")) / 1_000_000
    assert spent.cost_usd == expected


def test_without_a_price_it_is_unpriced_never_zero(simulator: Simulator) -> None:
    client = axme_meter.OpenAI(base_url=simulator.base_url, api_key="provider-key", max_retries=0)
    with pytest.warns(Warning, match="price"):
        client.chat.completions.create(model="some-unknown-oss-model", messages=[{"role": "user", "content": "hi"}])
    spent = axme_meter.spend()
    assert spent.unpriced_calls == 1 and spent.tokens_in > 0
