"""Budget blocks through the public API: the next call raises and the OpenAI mock sees nothing more."""

from __future__ import annotations

import time
from decimal import Decimal

import openai
import pytest

import axme_meter
from axme_meter import _budget, _runtime
from axme_meter._protocol import BlockError, parse_agents
from support.gateway_stub import StubGateway
from support.transport_helpers import AGENT, CountingOpenAI, chat

from support.polling import wait_for

CALL = Decimal("0.0075")  # one mocked call: 1000 in + 500 out tokens of gpt-4o-2024-08-06


def _blocked() -> bool:
    return AGENT in _runtime.default().blocked_agents()


def test_429_blocks_the_next_call_before_any_http(metered: StubGateway, client, openai_http: CountingOpenAI) -> None:
    metered.block(AGENT, limit="50.00", spent="50.12", remaining="-0.12", resets_at="2099-01-01T00:00:00Z")
    with axme_meter.agent(AGENT):
        chat(client)
        wait_for(_blocked, what="the 429 answer to block the agent")
        sent = openai_http.requests
        with pytest.raises(axme_meter.BudgetExceeded) as info:
            chat(client)
        with pytest.raises(axme_meter.BudgetExceeded):
            chat(client)
    assert openai_http.requests == sent == 1
    err = info.value
    assert isinstance(err, openai.OpenAIError)
    assert not isinstance(err, (openai.APIError, openai.RateLimitError))
    assert err.agent == AGENT and err.policy == "max_cost_per_day_usd"
    assert err.limit == Decimal("50") and err.spent == Decimal("50.12")
    assert err.resets_at is not None and err.resets_at.year == 2099
    assert err.intent is None
    # The spend of the call that crossed the line is still delivered (money spent is a fact).
    assert metered.total_calls() == 1


@pytest.mark.parametrize("state", ["paused", "killed", "blocked"])
def test_non_active_state_blocks_until_the_gateway_says_active(metered: StubGateway, client, openai_http, state: str) -> None:
    metered.agent_states[AGENT] = {"state": state, "policies": []}
    with axme_meter.agent(AGENT):
        chat(client)
        wait_for(_blocked, what=f"state={state} to block")
        with pytest.raises(axme_meter.BudgetExceeded) as info:
            chat(client)
        assert info.value.state == state
        assert openai_http.requests == 1
        metered.agent_states.pop(AGENT)  # resumed on the gateway
        wait_for(lambda: not _blocked(), what="a probe heartbeat to learn the agent is active again")
        chat(client)
    assert openai_http.requests == 2


def test_remaining_zero_blocks_even_on_a_200(metered: StubGateway, client, openai_http) -> None:
    metered.heartbeat_status_override = 200
    metered.block(AGENT, remaining="0.00", limit="1.00", spent="1.00")
    with axme_meter.agent(AGENT):
        chat(client)
        wait_for(_blocked, what="remaining <= 0 to block")
        with pytest.raises(axme_meter.BudgetExceeded):
            chat(client)
    assert openai_http.requests == 1


def test_block_lifts_when_resets_at_passes() -> None:
    _runtime.default().budget.apply_error(BlockError("budget_exceeded", "", AGENT, "max_cost_per_hour_usd", 10**12, 2 * 10**12,
                                   time.time() + 0.3))
    with pytest.raises(axme_meter.BudgetExceeded) as info:
        _runtime.default().budget.check(AGENT, "int_1")
    assert info.value.intent == "int_1" and info.value.policy == "max_cost_per_hour_usd"
    assert "resets" in str(info.value)
    wait_for(lambda: _try_check(AGENT), what="resets_at to pass")
    assert not _runtime.default().budget.armed


def _try_check(agent: str) -> bool:
    try:
        _runtime.default().budget.check(agent, None)
    except axme_meter.BudgetExceeded:
        return False
    return True


def test_other_agents_are_not_blocked(metered: StubGateway, client, openai_http) -> None:
    metered.block(AGENT)
    with axme_meter.agent(AGENT):
        chat(client)
    wait_for(_blocked, what="block")
    with axme_meter.agent("agent://acme/prod/other"):
        chat(client)
    assert openai_http.requests == 2


def test_lease_bounds_overshoot_of_a_fast_loop(gw: StubGateway, spool_dir, client, openai_http) -> None:
    """With $0.10 left and $0.0075 calls, a tight loop stops at the lease, not after an interval of spend."""
    axme_meter.configure(gateway_url=gw.url, api_key="k", spool_dir=spool_dir, heartbeat_interval=3600)
    limit = Decimal("0.10")
    gw.set_budget(AGENT, str(limit))
    with axme_meter.agent(AGENT):
        chat(client)
        assert axme_meter.flush(timeout=10)  # first answer: the lease
        raised = None
        for _ in range(100):
            try:
                chat(client)
            except axme_meter.BudgetExceeded as exc:
                raised = exc
                break
    assert raised is not None, "the loop was never stopped"
    assert raised.policy == "max_cost_per_day_usd"
    spent = axme_meter.spend().cost_usd
    # Sequential loop: at most one call in flight, so at most one call past the limit (here: none).
    assert spent <= limit + CALL
    assert openai_http.requests == int(spent / CALL)
    # Crossing half the lease woke the sender: a heartbeat goes out long before the hour-long interval
    # (early heartbeats are spaced ≥ 1 s apart), and its answer keeps the agent blocked.
    wait_for(lambda: gw.total_calls() == openai_http.requests, what="the early heartbeat")
    with axme_meter.agent(AGENT), pytest.raises(axme_meter.BudgetExceeded):
        chat(client)


def test_intent_registration_429_raises_before_the_body_runs(metered: StubGateway, client, openai_http) -> None:
    metered.intent_status = 429
    metered.intent_error = {"error": {"code": "budget_exceeded", "message": f"{AGENT} is over max_intents_per_day",
                                      "agent": AGENT, "policy": "max_intents_per_day", "limit": None, "spent": None,
                                      "resets_at": "2099-01-01T00:00:00Z",
                                      "details": {"dimension": "max_intents_per_day", "used": 10, "limit": 10}}}
    ran = False
    with axme_meter.agent(AGENT):
        with pytest.raises(axme_meter.BudgetExceeded) as info:
            with axme_meter.intent("ticket-42", customer="acme"):
                ran = True
        assert not ran
        assert info.value.intent == "ticket-42" and info.value.policy == "max_intents_per_day"
        assert metered.intents == [{"agent": AGENT, "intent_id": "ticket-42", "labels": {"customer": "acme"}}]
        with pytest.raises(axme_meter.BudgetExceeded):
            chat(client)  # the agent is blocked locally too
        with pytest.raises(axme_meter.BudgetExceeded):
            with axme_meter.intent("ticket-43"):
                ran = True
    assert not ran
    assert len(metered.intents) == 1  # a known-blocked agent does not even ask
    assert openai_http.requests == 0


def test_intent_registration_ok_and_gateway_down_fails_open(metered: StubGateway, client) -> None:
    with axme_meter.agent(AGENT), axme_meter.intent("ticket-1", team="x"):
        chat(client)
    assert metered.intents[-1] == {"agent": AGENT, "intent_id": "ticket-1", "labels": {"team": "x"}}
    axme_meter.configure(gateway_url="http://127.0.0.1:9")  # nothing listens there
    with axme_meter.agent(AGENT), axme_meter.intent("ticket-2"):
        chat(client)  # fail_mode="open" (default): work goes on


def test_fail_closed_after_the_gateway_is_unreachable_too_long(metered: StubGateway, client, openai_http) -> None:
    axme_meter.configure(fail_mode="closed", fail_after=0.2)
    metered.mode = "down"
    with axme_meter.agent(AGENT):
        chat(client)

        def refused() -> bool:
            try:
                _runtime.default().budget.check(AGENT, None)
            except axme_meter.BudgetExceeded as exc:
                return exc.policy == "gateway_unreachable"
            return False

        wait_for(refused, what="fail-closed after fail_after")
        with pytest.raises(axme_meter.BudgetExceeded):
            chat(client)
        assert openai_http.requests == 1
        metered.mode = "ok"
        wait_for(lambda: not refused(), what="the gateway to answer again")
        chat(client)
    assert openai_http.requests == 2


def test_local_limits_without_any_gateway(client, openai_http) -> None:
    axme_meter.configure(local_limits={"max_cost_per_day_usd": "0.03"})
    assert axme_meter.transport_status()["mode"] == "meter-only"
    with axme_meter.agent(AGENT):
        with pytest.raises(axme_meter.BudgetExceeded) as info:
            for _ in range(20):
                chat(client)
    assert axme_meter.spend().cost_usd <= Decimal("0.03")
    assert info.value.policy == "max_cost_per_day_usd" and info.value.limit == Decimal("0.03")
    assert info.value.resets_at is not None
    assert "local limit" in str(info.value)
    assert openai_http.requests == 4  # 4 × $0.0075 = $0.03 exactly
    # A different agent has its own day budget.
    with axme_meter.agent("agent://acme/prod/other"):
        chat(client)


def test_local_per_intent_limit(client, openai_http) -> None:
    axme_meter.configure(local_limits={"max_cost_per_intent_usd": Decimal("0.015")})
    with axme_meter.agent(AGENT):
        with axme_meter.intent("a"):
            chat(client)
            chat(client)
            with pytest.raises(axme_meter.BudgetExceeded) as info:
                chat(client)
            assert info.value.intent == "a" and info.value.policy == "max_cost_per_intent_usd"
        with axme_meter.intent("b"):
            chat(client)
    assert openai_http.requests == 3


def test_bad_local_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown local limit"):
        axme_meter.configure(local_limits={"max_cost_per_week": 1})
    with pytest.raises(ValueError, match="greater than 0"):
        axme_meter.configure(local_limits={"max_cost_per_day_usd": -1})


def test_no_gateway_no_limits_means_no_accounting() -> None:
    rt = _runtime.default()
    assert not rt.accounting and not rt.budget.armed


def test_message_names_agent_policy_and_amounts() -> None:
    block = _budget.Block(_budget.GATEWAY, "max_cost_per_day_usd", 50 * 10**12, 50_120_000_000_000, None)
    err = block.error(AGENT, "int_1")
    assert str(err) == f"{AGENT} is over max_cost_per_day_usd: spent $50.12 of $50.00"


def test_gateway_lease_share_is_honoured_over_remaining() -> None:
    """With ``lease`` in the answer (our gateway, N processes) the local lease is that share, not all of ``remaining``."""
    answer = parse_agents({"agents": {AGENT: {"state": "active", "policies": [
        {"name": "max_cost_per_day_usd", "limit": "1.00", "spent": "0.00", "remaining": "1.00", "lease": "0.25",
         "resets_at": "2099-01-01T00:00:00Z"}]}}})
    assert answer[AGENT].policies[0].lease == 250_000_000_000
    _runtime.default().budget.apply_answer(answer, {})
    assert Decimal(_runtime.default().budget.status()["leases"][AGENT]) == Decimal("0.25")
    pico = 10**12
    _runtime.default().budget.account(AGENT, None, pico // 10, time.time())  # $0.10 spent, a next $0.10 still fits in $0.25
    assert not _blocked()
    _runtime.default().budget.account(AGENT, None, pico // 10, time.time())  # $0.20: a third call would pass the share (not remaining)
    assert _blocked()
    with pytest.raises(axme_meter.BudgetExceeded) as info:
        _runtime.default().budget.check(AGENT, None)
    assert "would exceed the remaining budget" in str(info.value)


def test_without_lease_field_remaining_is_the_lease() -> None:
    """AXME Cloud sends no ``lease``: the whole ``remaining`` is leased, as before."""
    answer = parse_agents({"agents": {AGENT: {"state": "active", "policies": [
        {"name": "max_cost_per_day_usd", "limit": "1.00", "spent": "0.40", "remaining": "0.60",
         "resets_at": "2099-01-01T00:00:00Z"}]}}})
    assert answer[AGENT].policies[0].lease is None
    _runtime.default().budget.apply_answer(answer, {})
    assert Decimal(_runtime.default().budget.status()["leases"][AGENT]) == Decimal("0.60")


def test_local_blocks_are_reported_and_a_gateway_that_refuses_the_field_still_gets_the_spend(
        gw: StubGateway, spool_dir, client, openai_http) -> None:
    axme_meter.configure(gateway_url=gw.url, api_key="k", spool_dir=spool_dir, heartbeat_interval=3600,
                         local_limits={"max_cost_per_day_usd": "0.02"})
    with axme_meter.agent(AGENT):
        chat(client)
        chat(client)  # $0.015: the next $0.0075 call would cross $0.02
        with pytest.raises(axme_meter.BudgetExceeded):
            chat(client)
    assert axme_meter.flush(timeout=10)
    reported = [b for b in gw.blocks if b["agent"] == AGENT]
    assert reported and reported[-1]["source"] == "local" and reported[-1]["policy"] == "max_cost_per_day_usd"
    assert reported[-1]["limit"] == "0.02" and reported[-1]["spent"] == "0.015"
    assert reported[-1]["instance"] == _runtime.default().current_sender().instance

    # An older gateway refuses the field: the spend goes through anyway, and the field is not sent again.
    gw.accepts_blocks = False
    with axme_meter.agent("agent://acme/prod/other"):
        chat(client)
    assert axme_meter.flush(timeout=10)
    with axme_meter.agent("agent://acme/prod/other"):
        chat(client)
    requests_before = gw.heartbeat_requests()
    assert axme_meter.flush(timeout=10)
    assert gw.heartbeat_requests() == requests_before + 1  # no refused attempt any more
    assert gw.total_cost() == axme_meter.spend().cost_usd == 4 * CALL
