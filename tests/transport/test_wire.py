"""The protocol pieces on their own: entries, answers, errors, Retry-After, the URL policy."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from axme_meter._meter import CallRecord, Meter
from axme_meter._pricing import Usage
from axme_meter._protocol import EntryResult, parse_agents, parse_error, parse_iso, parse_results
from axme_meter._transport._entries import Entry
from axme_meter._transport._gateway_http import is_loopback, parse_retry_after, validate_url

AGENT = "agent://acme/prod/research"


def _entry(entry_id: str, *calls: tuple[int, str, float]) -> Entry:
    """An entry built the way the sender builds one: calls recorded in a meter, drained, folded in."""
    meter = Meter()
    for cost, model, at in calls:
        meter.record(CallRecord(AGENT, "int_1", model, Usage(input_tokens=100, output_tokens=50, cached_tokens=10,
                                                            reasoning_tokens=5), cost, True, False, "v1", at=at))
    entry: Entry | None = None
    for (agent, intent, model), pending in meter.drain().items():
        if entry is None:
            entry = Entry(entry_id, agent, intent, pending.window_start, pending.window_end)
        entry.add(model, pending)
    assert entry is not None
    return entry


AT = 1_764_370_000.25


def test_entry_wire_form_matches_the_protocol() -> None:
    entry = _entry("hb_x_1_1", (30_000_000_000, "gpt-4o", AT), (1, "o3", 1_764_370_031.5))
    wire = entry.to_wire()
    assert list(wire) == ["id", "agent", "intent_id", "status", "window_start", "window_end", "metrics", "by_model",
                          "pricing_version"]
    assert wire["window_start"] == "2025-11-28T22:46:40Z" and wire["window_end"] == "2025-11-28T22:47:12Z"
    assert wire["metrics"] == {"cost_usd": "0.030000000001", "llm_calls": 2, "tokens_in": 200, "tokens_out": 100,
                               "cached_tokens": 20, "reasoning_tokens": 10, "estimated_calls": 0, "unpriced_calls": 0}
    assert wire["by_model"]["gpt-4o"] == {"cost_usd": "0.03", "llm_calls": 1, "tokens_in": 100, "tokens_out": 50}
    assert wire["by_model"]["o3"]["cost_usd"] == "0.000000000001"  # never exponent form


def test_the_gateway_accepts_what_the_client_sends() -> None:
    """One protocol: the client's wire form validates against the gateway's own schema."""
    schemas = pytest.importorskip("axme_meter.gateway._schemas", reason="needs the gateway extra")
    entry = _entry("hb_x_1_9", (7_500_000_000, "gpt-4o", AT), (1, "o3", AT + 1))
    batch = schemas.HeartbeatBatch.model_validate({"heartbeats": [entry.to_wire()]})
    parsed = schemas.HeartbeatEntry.model_validate(batch.heartbeats[0])  # entries are checked one by one
    assert parsed.metrics.cost_usd == entry.totals.cost_pico and parsed.agent == AGENT
    assert {m: v.cost_usd for m, v in parsed.by_model.items()} == {"gpt-4o": 7_500_000_000, "o3": 1}


def test_spool_round_trip_is_exact() -> None:
    entry = _entry("hb_x_1_2", (123_456_789, "gpt-4o", AT))
    back = Entry.from_spool(entry.to_spool())
    assert back.to_wire() == entry.to_wire()
    assert back.totals.cost_pico == 123_456_789 and not back.frozen
    assert Entry.from_spool(entry.to_wire()).frozen  # a plain wire entry may have been sent: frozen
    with pytest.raises(ValueError):
        Entry.from_spool({"id": "x"})


def test_answer_parsing_is_tolerant() -> None:
    body = {"results": [{"id": "a", "status": "recorded"}, {"id": "b", "status": "duplicate"}, "junk"],
            "agents": {AGENT: {"state": "blocked", "policies": [
                {"name": "max_cost_per_day_usd", "limit": 50, "spent": "50.12", "remaining": "-0.12",
                 "resets_at": "2026-11-29T00:00:00Z"}, "junk"]}, "agent://x/y": "junk"}}
    assert parse_results(body) == {"a": EntryResult("recorded"), "b": EntryResult("duplicate")}
    agents = parse_agents(body)
    assert list(agents) == [AGENT]
    policy = agents[AGENT].policies[0]
    assert policy.limit == 50 * 10**12 and policy.remaining == -120_000_000_000
    assert policy.resets_at == parse_iso("2026-11-29T00:00:00+00:00")
    assert parse_results({"ok": True}) is None and parse_agents(None) == {}


def test_block_error_reads_ours_and_axme_quota_details() -> None:
    ours = parse_error({"error": {"code": "budget_exceeded", "message": "m", "agent": AGENT, "policy": "max_cost_per_day_usd",
                                  "limit": "50.00", "spent": "50.12", "resets_at": "2026-11-29T00:00:00Z"}})
    assert ours is not None and ours.policy == "max_cost_per_day_usd" and ours.spent == 50_120_000_000_000
    axme = parse_error({"error": {"code": "quota_exceeded", "message": "m", "details": {
        "dimension": "max_cost_per_day_usd", "used": 5, "limit": "5.0", "reset_at": "2026-11-29T00:00:00Z"}}})
    assert axme is not None and axme.policy == "max_cost_per_day_usd" and axme.limit == 5 * 10**12
    assert axme.resets_at is not None
    assert parse_error({"detail": "nope"}) is None


def test_retry_after_is_parsed_and_capped() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("86400") == 60.0  # a budget reset hours away must not stall the sender
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 20 <= (parse_retry_after(http_date) or 0) <= 31


def test_url_policy() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("10.0.0.1") and not is_loopback("gateway.example.com")
    assert validate_url("https://gw.example.com/", allow_insecure_http=False) == "https://gw.example.com"
    with pytest.raises(ValueError, match="http://"):
        validate_url("http://10.1.2.3:8080", allow_insecure_http=False)
    with pytest.raises(ValueError, match="credentials"):
        validate_url("https://user:secret@gw.example.com", allow_insecure_http=False)
    with pytest.raises(ValueError):
        validate_url("ftp://gw.example.com", allow_insecure_http=True)


def test_money_on_the_wire_is_exact() -> None:
    entry = _entry("hb_x_1_3", *[(1, "gpt-4o", AT + i) for i in range(1000)])
    assert Decimal(entry.to_wire()["metrics"]["cost_usd"]) == Decimal("0.000000001")
