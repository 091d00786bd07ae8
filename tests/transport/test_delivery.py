"""Heartbeat delivery through the public API: batching, idempotency, outages, spool, memory bounds."""

from __future__ import annotations

import json
import logging
import re
from decimal import Decimal
from pathlib import Path

import pytest

import axme_meter
from axme_meter import _runtime
from axme_meter._meter import CallRecord, meter
from axme_meter._pricing import Usage
from support.gateway_stub import StubGateway
from support.transport_helpers import AGENT, API_KEY, MODEL, chat

from support.polling import wait_for

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _sender():
    return _runtime.default().current_sender()


def test_n_calls_make_one_request_adding_up_to_spend(gw: StubGateway, spool_dir: Path, client) -> None:
    axme_meter.configure(gateway_url=gw.url, api_key=API_KEY, spool_dir=spool_dir, heartbeat_interval=60)
    # Warm-up: the first spend of an agent the gateway hasn't answered about is sent at once (to get
    # its budget lease early); batching is about the steady state after that.
    for agent in (AGENT, "agent://acme/prod/writer"):
        with axme_meter.agent(agent):
            chat(client)
    assert axme_meter.flush(timeout=10)
    gw.requests.clear()
    with axme_meter.agent(AGENT):
        for i in range(12):
            with axme_meter.intent(f"int_{i % 3}"):
                chat(client)
    with axme_meter.agent("agent://acme/prod/writer"):
        for _ in range(5):
            chat(client)
    assert axme_meter.flush(timeout=10)
    assert len(gw.requests) == 1
    request = gw.requests[0]
    assert request["headers"]["x-api-key"] == API_KEY
    entries = request["body"]["heartbeats"]
    assert len(entries) == 4  # 3 intents of one agent + 1 agent without intent
    spend = axme_meter.spend()
    assert sum(e["metrics"]["llm_calls"] for e in entries) == 17
    everything = gw.real_entries()  # warm-up + batch
    assert sum(Decimal(e["metrics"]["cost_usd"]) for e in everything) == spend.cost_usd
    assert sum(e["metrics"]["llm_calls"] for e in everything) == spend.calls == 19
    assert sum(e["metrics"]["tokens_in"] for e in everything) == spend.tokens_in
    for entry in entries:
        assert entry["id"].startswith("hb_")
        assert entry["status"] == "processing"
        assert ISO_Z.match(entry["window_start"]) and ISO_Z.match(entry["window_end"])
        assert entry["window_start"] <= entry["window_end"]
        assert isinstance(entry["metrics"]["cost_usd"], str)
        assert set(entry["by_model"]) == {MODEL}
        assert entry["by_model"][MODEL]["cost_usd"] == entry["metrics"]["cost_usd"]
        assert entry["pricing_version"]
    intents = {e.get("intent_id") for e in entries if e["agent"] == AGENT}
    assert intents == {"int_0", "int_1", "int_2"}
    assert "intent_id" not in [e for e in entries if e["agent"] != AGENT][0]


def test_first_heartbeat_goes_out_promptly_without_flush(gw: StubGateway, spool_dir: Path, client) -> None:
    axme_meter.configure(gateway_url=gw.url, api_key=API_KEY, spool_dir=spool_dir, heartbeat_interval=3600)
    chat(client)
    wait_for(lambda: gw.total_calls() == 1, what="the first heartbeat (interval is an hour)")


def test_many_calls_per_interval_stay_one_request_per_interval(metered: StubGateway) -> None:
    axme_meter.configure(heartbeat_interval=0.5)
    usage = Usage(input_tokens=10, output_tokens=5)
    for _ in range(20_000):
        meter.record(CallRecord(AGENT, None, MODEL, usage, 1_000, True, False, "v1"))
    assert axme_meter.flush(timeout=10)
    # 20k records in well under the interval: a handful of requests, never one per call.
    assert gw_requests(metered) <= 5
    assert metered.total_calls() == 20_000
    assert metered.total_cost() == Decimal("0.00002")


def gw_requests(gw: StubGateway) -> int:
    return gw.heartbeat_requests()


def test_replayed_batch_is_not_double_counted(metered: StubGateway, client) -> None:
    metered.mode = "lose_answer"  # the gateway records, but the answer never arrives
    for _ in range(3):
        chat(client)
    assert not axme_meter.flush(timeout=0.5)
    assert metered.total_calls() >= 1  # recorded by the gateway, but the client never heard back
    metered.mode = "ok"
    assert axme_meter.flush(timeout=10)
    assert metered.duplicates >= 1  # same ids re-sent ...
    assert metered.total_calls() == 3  # ... and counted once
    assert metered.total_cost() == axme_meter.spend().cost_usd


def test_gateway_down_then_up_loses_and_duplicates_nothing(metered: StubGateway, client) -> None:
    metered.mode = "down"
    for _ in range(4):
        chat(client)
    wait_for(lambda: metered.heartbeat_requests() >= 2, what="retries while the gateway is down")
    state_files = wait_for(lambda: list(Path(_sender().status()["spool_dir"]).glob("proc-*.json")), what="spool file")
    spooled = json.loads(state_files[0].read_text())["entries"]
    assert sum(e["metrics"]["llm_calls"] for e in spooled) == 4
    for _ in range(3):
        chat(client)
    metered.mode = "ok"
    wait_for(lambda: metered.total_calls() == 7, what="delivery after the gateway returns")
    assert axme_meter.flush(timeout=10)
    assert metered.total_cost() == axme_meter.spend().cost_usd == Decimal("0.0525")
    assert not list(Path(_sender().status()["spool_dir"]).glob("proc-*.json"))  # acknowledged: spool emptied


def test_outage_memory_is_bounded_by_agents_intents_models(metered: StubGateway) -> None:
    metered.mode = "down"
    usage = Usage(input_tokens=1, output_tokens=1)
    for i in range(30_000):
        agent = f"agent://acme/prod/a{i % 2}"
        meter.record(CallRecord(agent, f"int_{i % 3}", MODEL, usage, 7, True, False, "v1"))
        if i % 5_000 == 0:
            axme_meter.flush(timeout=0.2)  # force send attempts (and freezes) during the outage
    axme_meter.flush(timeout=0.2)
    assert _sender().pending_entries() <= 2 * 2 * 3  # ≤ one frozen + one open per agent × intent
    metered.mode = "ok"
    assert axme_meter.flush(timeout=10)
    assert metered.total_calls() == 30_000
    assert metered.total_cost() == Decimal(30_000 * 7).scaleb(-12)


def test_more_than_1000_entries_are_split(metered: StubGateway) -> None:
    axme_meter.configure(heartbeat_interval=60)
    usage = Usage(input_tokens=1, output_tokens=1)
    for i in range(1_500):
        meter.record(CallRecord(AGENT, f"int_{i}", MODEL, usage, 1, True, False, "v1"))
    assert axme_meter.flush(timeout=10)
    sizes = [len(r["body"]["heartbeats"]) for r in metered.requests]
    assert max(sizes) <= 1000 and sum(sizes) == 1500


def test_unwritable_spool_warns_once_and_keeps_working_in_memory(gw: StubGateway, tmp_path: Path, client, caplog) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    caplog.set_level(logging.WARNING, logger="axme_meter")
    axme_meter.configure(gateway_url=gw.url, api_key=API_KEY, spool_dir=blocker / "spool", heartbeat_interval=0.1)
    gw.mode = "down"
    for _ in range(3):
        chat(client)
    wait_for(lambda: gw.heartbeat_requests() >= 2, what="retries")
    axme_meter.configure(heartbeat_interval=0.05)  # reconfigure: must not warn again
    gw.mode = "ok"
    wait_for(lambda: gw.total_calls() == 3, what="delivery from memory")
    warnings = [r for r in caplog.records if "not writable" in r.getMessage()]
    assert len(warnings) == 1
    assert _sender().status()["spool_writable"] is False


def test_api_key_is_never_logged(gw: StubGateway, spool_dir: Path, client, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    axme_meter.configure(gateway_url=gw.url, api_key=API_KEY, spool_dir=spool_dir, heartbeat_interval=0.05)
    gw.mode = "down"
    chat(client)
    wait_for(lambda: gw.heartbeat_requests() >= 2, what="failed sends")
    gw.mode = "ok"
    assert axme_meter.flush(timeout=10)
    axme_meter.configure(gateway_url="http://127.0.0.1:9")  # unreachable port
    chat(client)
    axme_meter.flush(timeout=0.5)
    text = "\n".join(r.getMessage() for r in caplog.records) + repr(axme_meter.transport_status())
    assert API_KEY not in text


def test_recovery_of_a_dead_process_file_is_idempotent(metered: StubGateway, spool_dir: Path) -> None:
    """A crash in the middle of adoption leaves the same entries in two files: the ids make it harmless."""
    from axme_meter._transport._spool import namespace

    entry = {
        "id": "hb_deadbeef0001_1_1", "agent": AGENT, "status": "processing",
        "window_start": "2026-11-28T23:00:00Z", "window_end": "2026-11-28T23:00:30Z",
        "metrics": {"cost_usd": "0.25", "llm_calls": 2, "tokens_in": 10, "tokens_out": 5, "cached_tokens": 0,
                    "reasoning_tokens": 0, "estimated_calls": 0, "unpriced_calls": 0},
        "by_model": {MODEL: {"cost_usd": "0.25", "llm_calls": 2, "tokens_in": 10, "tokens_out": 5}},
        "pricing_version": "v1",
    }
    ns = spool_dir / namespace(metered.url, API_KEY)
    ns.mkdir(parents=True)
    for name in ("proc-deadbeef0001.json", "proc-cafecafe0002.json"):
        (ns / name).write_text(json.dumps({"entries": [entry]}))
    assert axme_meter.flush(timeout=10)
    assert metered.total_cost() == Decimal("0.25")
    assert metered.total_calls() == 2
    assert not list(ns.glob("proc-*.json"))


@pytest.mark.parametrize("legacy", [False, True], ids=["per-entry-results", "whole-batch-422"])
def test_an_invalid_entry_is_quarantined_and_the_rest_delivered(metered: StubGateway, client, legacy: bool) -> None:
    """Per-entry results, or (an older gateway) a 422 for the whole batch, which is halved until the bad entry
    stands alone: either way the good entries are delivered and the bad one is kept aside with its reason."""
    metered.reject_intent = "int_bad"
    metered.legacy = legacy
    axme_meter.configure(heartbeat_interval=60)
    with axme_meter.agent(AGENT):
        for name in ("int_a", "int_bad", "int_b", "int_c"):
            with axme_meter.intent(name):
                chat(client)
    result = axme_meter.flush(timeout=10)
    assert not result and result.outcome == "refused"
    assert result.refused_entries == 1 and result.refused_usd == Decimal("0.0075") and result.pending_entries == 0
    assert metered.total_calls() == 3
    assert {e["intent_id"] for e in metered.real_entries()} == {"int_a", "int_b", "int_c"}
    status = axme_meter.transport_status()
    quarantine = list(Path(status["spool_dir"]).glob("quarantine-*.jsonl"))
    assert quarantine and "int_bad" in quarantine[0].read_text() and "intent_id is invalid" in quarantine[0].read_text()
    assert status["quarantined"]["entries"] == 1 and status["quarantined"]["by_agent"][AGENT]["cost_usd"] == "0.0075"
    assert status["pending_entries"] == 0


def test_threaded_callers_deliver_exactly_what_they_spent(metered: StubGateway, client) -> None:
    import threading

    axme_meter.configure(heartbeat_interval=0.05)

    def work(n: int) -> None:
        with axme_meter.agent(f"agent://acme/prod/worker{n % 3}"):
            for i in range(40):
                with axme_meter.intent(f"int_{i % 4}"):
                    chat(client)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert axme_meter.flush(timeout=15)
    assert metered.total_calls() == 320
    assert metered.total_cost() == axme_meter.spend().cost_usd
    ids = [e["id"] for e in metered.real_entries()]
    assert len(ids) == len(set(ids))


def test_rate_limited_heartbeat_honours_retry_after(metered: StubGateway, client) -> None:
    import time

    from axme_meter._transport._gateway_http import Answer

    axme_meter.configure(heartbeat_interval=3600)  # only flush() sends in this test
    chat(client)
    assert axme_meter.flush(timeout=10)
    chat(client)
    sender = _runtime.default().current_sender()

    class RateLimited:
        def post(self, path, body, *, timeout=None):  # noqa: ANN001
            return Answer(429, {"error": {"code": "rate_limited", "message": "120 requests per minute"}}, 30.0)

        def close(self) -> None:
            pass

    sender._http = RateLimited()
    before = sender.requests
    assert not axme_meter.flush(timeout=5)
    assert sender.requests == before + 1  # flush gave up instead of retrying inside the Retry-After window
    assert sender._retry_at - time.monotonic() > 20  # waits as told (capped at 60 s), not hammering
    assert sender.pending_entries() == 1  # kept
    assert _runtime.default().blocked_agents() == []  # a rate limit is not a budget block


def test_dead_processes_leave_no_lock_litter(metered: StubGateway, spool_dir: Path) -> None:
    from axme_meter._transport._spool import namespace

    ns = spool_dir / namespace(metered.url, API_KEY)
    ns.mkdir(parents=True)
    (ns / "proc-0000dead0001.lock").write_text("")
    (ns / "proc-0000dead0001.json.tmp").write_text("{half")
    assert axme_meter.flush(timeout=5)
    assert sorted(p.name for p in ns.iterdir()) == ["identity.json", f"proc-{_sender().instance}.lock"]
