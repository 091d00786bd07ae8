"""The fleet's price channel through the public API: ``axme_meter.OpenAI`` (mocked OpenAI HTTP only) against a real
gateway process that has loaded a price file this package's bundled table lacks."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("uvicorn", reason="needs the gateway extra")

import axme_meter  # noqa: E402
from axme_meter import _config  # noqa: E402
from axme_meter._pricing import table  # noqa: E402
from support.gateway_process import GatewayProcess  # noqa: E402
from support.gateway_stub import StubGateway  # noqa: E402
from support.openai_mock import FakeOpenAI, chat_body, client as fake_client  # noqa: E402
from support.transport_helpers import API_KEY  # noqa: E402
from support.polling import wait_for  # noqa: E402

AGENT = "agent://acme/prod/pricing"
#: A model this package's bundled table does not know (the client's table is "older" than the gateway's).
NEW_MODEL = "gpt-7-test"
OURS = f'''[meta]
provider = "ours"
checked = "2026-11-20"

[[models]]
id = "{NEW_MODEL}"
[[models.prices]]
effective = "2026-01-01"
input = "3.00"
cached_input = "0.30"
output = "12.00"
'''
#: One mocked call: 1000 input tokens (200 cached) and 500 output tokens: 800*$3 + 200*$0.30 + 500*$12 per 1M.
CALL = Decimal("0.00846")


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    """A real gateway whose clock is the real now (so the client's and the gateway's windows agree)."""
    gateway = GatewayProcess(tmp_path / "gw", clock=_now_iso())
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def llm() -> Any:
    fake = FakeOpenAI()
    fake.json("/chat/completions", lambda payload: chat_body(payload["model"], prompt=1000, completion=500, cached=200))
    return fake_client(axme_meter.OpenAI, fake)


def _load(gw: GatewayProcess, toml: str = OURS) -> str:
    with gw.client() as http:
        resp = http.post("/v1/prices", json={"name": "ours.toml", "toml": toml})
    assert resp.status_code in (200, 201), resp.text
    return str(resp.json()["pricing_version"])


def _policy(gw: GatewayProcess, **fields: object) -> None:
    with gw.client() as http:
        resp = http.put(f"/v1/mesh/agents/{quote(AGENT, safe='')}/policies/cost", json=fields)
    assert resp.status_code == 200, resp.text


def _model_cost(gw: GatewayProcess, model: str) -> Decimal:
    with gw.client() as http:
        rows = http.get(f"/v1/mesh/agents/{quote(AGENT, safe='')}/costs").json()["by_model"]
    return sum((Decimal(r["cost_usd"]) for r in rows if r["model"] == model), Decimal(0))


def _ask(llm: Any, model: str) -> Any:
    return llm.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def _installed(version: str) -> bool:
    return axme_meter.transport_status().get("pricing_version") == version


def test_a_client_prices_a_model_it_did_not_know_once_the_gateway_has_it(gw: GatewayProcess, spool_dir: Path,
                                                                          llm: Any) -> None:
    assert table().resolve(NEW_MODEL) is None  # this process's bundled table does not know the model
    loaded = _load(gw)
    _policy(gw, max_cost_per_day_usd=str(3 * CALL))
    axme_meter.configure(gateway_url=gw.url, api_key=gw.admin_key, spool_dir=spool_dir, heartbeat_interval=0.2)
    with axme_meter.agent(AGENT):
        _ask(llm, "gpt-4o-mini")  # the first call starts the sender, which fetches the gateway's table in the background
        wait_for(lambda: _installed(loaded), timeout=20, what="the gateway's price table")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no UnpricedCallWarning: the model is priced now
            _ask(llm, NEW_MODEL)
        spend = axme_meter.spend().by_model[NEW_MODEL]
        assert spend.cost_usd == CALL and spend.unpriced_calls == 0 and spend.estimated_calls == 0
        assert table().version == loaded  # same release, no local override: exactly the gateway's table
        # its spend counts against the agent's budget: the policy is worth three such calls
        made = 1
        with pytest.raises(axme_meter.BudgetExceeded):
            for _ in range(10):
                _ask(llm, NEW_MODEL)
                made += 1
    assert axme_meter.flush(timeout=10)
    assert _model_cost(gw, NEW_MODEL) == made * CALL
    with gw.client() as http:
        agent = http.get(f"/v1/mesh/agents/{quote(AGENT, safe='')}").json()
    day = Decimal(agent["windows"]["day"]["cost_usd"])
    assert 3 * CALL - CALL < day <= 3 * CALL  # stopped within one call of the limit, never past it


def test_a_running_client_picks_up_a_file_loaded_later_and_its_unpriced_spend_is_priced(
        gw: GatewayProcess, spool_dir: Path, llm: Any) -> None:
    axme_meter.configure(gateway_url=gw.url, api_key=gw.admin_key, spool_dir=spool_dir, heartbeat_interval=60)
    with gw.client() as http:
        bundled = http.get("/v1/prices").json()["pricing_version"]
    with axme_meter.agent(AGENT):
        _ask(llm, "gpt-4o-mini")
        wait_for(lambda: _installed(bundled), timeout=20, what="the gateway's bundled table")
        assert axme_meter.flush(timeout=10)
        with pytest.warns(axme_meter.UnpricedCallWarning):
            _ask(llm, NEW_MODEL)  # not in any table yet: booked unpriced, at $0 (this agent has no money policy)
        assert axme_meter.spend().by_model[NEW_MODEL].unpriced_calls == 1
        loaded = _load(gw)  # the admin loads the model's price while the client runs
        assert axme_meter.flush(timeout=10)  # the entry carries the call's token details; its answer, the new version
        wait_for(lambda: _installed(loaded), timeout=20, what="the newly loaded table")
        _ask(llm, NEW_MODEL)  # priced here now
        assert axme_meter.spend().by_model[NEW_MODEL].cost_usd == CALL
        assert axme_meter.flush(timeout=10)
    assert _model_cost(gw, NEW_MODEL) == 2 * CALL  # the unpriced call was priced by the gateway, once


def test_a_users_own_prices_win_over_the_gateways(gw: GatewayProcess, spool_dir: Path, llm: Any) -> None:
    loaded = _load(gw)
    axme_meter.configure(gateway_url=gw.url, api_key=gw.admin_key, spool_dir=spool_dir, heartbeat_interval=0.2,
                         extra_prices=[{"id": NEW_MODEL, "prices": [{"effective": "2026-01-01", "input": "1", "output": "1"}]}])
    with axme_meter.agent(AGENT):
        _ask(llm, "gpt-4o-mini")
        wait_for(lambda: _installed(loaded), timeout=20, what="the gateway's price table")
        _ask(llm, NEW_MODEL)
    assert axme_meter.spend().by_model[NEW_MODEL].cost_usd == Decimal("0.0015")  # 1500 tokens at $1 / 1M
    assert table().version != loaded  # a local override is visible in the version every record carries
    assert axme_meter.flush(timeout=10)
    assert _model_cost(gw, NEW_MODEL) == Decimal("0.0015")  # priced by the client: the gateway keeps its figure
    _config.configure(extra_prices=[])
    assert table().quote(NEW_MODEL, _usage()).cost_pico == int(CALL * 10**12)  # the gateway's table is still installed


def _usage() -> Any:
    from axme_meter._pricing import Usage

    return Usage(input_tokens=1000, cached_tokens=200, output_tokens=500)


def test_a_gateway_without_prices_leaves_the_bundled_table_and_gets_no_new_fields(spool_dir: Path, llm: Any,
                                                                                    caplog: pytest.LogCaptureFixture) -> None:
    stub = StubGateway()  # like AXME Cloud or an older gateway: no /v1/prices, no pricing_version in answers
    caplog.set_level(logging.DEBUG, logger="axme_meter")
    try:
        axme_meter.configure(gateway_url=stub.url, api_key=API_KEY, spool_dir=spool_dir, heartbeat_interval=0.2)
        before = table().version
        with axme_meter.agent(AGENT):
            _ask(llm, "gpt-4o-mini")
            assert axme_meter.flush(timeout=10)
            wait_for(lambda: any("serves no price table" in r.getMessage() for r in caplog.records), timeout=20,
                     what="the price fetch to give up")
        assert axme_meter.transport_status()["pricing_version"] is None and table().version == before
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "price" in r.getMessage()]
        sent = stub.real_entries()[0]["by_model"]["gpt-4o-mini"]
        assert sorted(sent) == ["cost_usd", "llm_calls", "tokens_in", "tokens_out"]  # no cached_tokens for an old gateway
    finally:
        axme_meter.configure(gateway_url=None)
        stub.close()


def test_token_details_go_only_to_a_gateway_that_announced_prices(spool_dir: Path, llm: Any) -> None:
    stub = StubGateway()
    stub.pricing_version = "openai-2026-12-02+sha256:000000000000"  # its answers announce a price table
    try:
        axme_meter.configure(gateway_url=stub.url, api_key=API_KEY, spool_dir=spool_dir, heartbeat_interval=60)
        with axme_meter.agent(AGENT):
            _ask(llm, "gpt-4o-mini")
            assert axme_meter.flush(timeout=10)  # sent before any answer: decided without details, and kept so
            _ask(llm, "gpt-4o-mini")
            assert axme_meter.flush(timeout=10)
        first, second = (e["by_model"]["gpt-4o-mini"] for e in stub.real_entries())
        assert "cached_tokens" not in first and second["cached_tokens"] == 200 and "unpriced_calls" not in second
    finally:
        axme_meter.configure(gateway_url=None)
        stub.close()
