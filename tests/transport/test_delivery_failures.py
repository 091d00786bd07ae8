"""Five ways spend used to vanish or enforcement used to switch off, each through the public API against a
real gateway process: nothing lost, nothing blocked behind a bad entry, nothing sent under another key.

1. one refused entry in the spool switched enforcement off for every later process;
2. large sums (an outage piling up over $10,000 per entry) were refused and dropped;
3. spool files were adopted and sent under another key (or waited forever for a gateway that moved);
4. one malformed spool file stopped all crash recovery;
5. auth errors looked like outages, and idempotency conflicts were silent.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

pytest.importorskip("uvicorn", reason="the real gateway needs the 'gateway' extra (pip install 'axme_meter[gateway]')")

import axme_meter  # noqa: E402
from axme_meter import _runtime  # noqa: E402
from axme_meter._transport._spool import namespace  # noqa: E402
from support.gateway_process import ROOT, GatewayProcess, running_gateway  # noqa: E402
from support.lossy_proxy import LossyProxy  # noqa: E402
from support.openai_mock import chat_body  # noqa: E402
from support.transport_helpers import AGENT, MODEL, CountingOpenAI, chat, dead_process_spool, wire_entry  # noqa: E402
from support.polling import wait_for  # noqa: E402

CHILD = str(Path(__file__).with_name("child_process.py"))
CALL = Decimal("0.0075")
FOREIGN = "agent://otherorg/prod/borrowed"


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path / "gw") as gateway:
        yield gateway


@pytest.fixture
def proxy(gw: GatewayProcess) -> Iterator[LossyProxy]:
    """The URL clients use; ``proxy.mode = "down"`` is an outage."""
    p = LossyProxy(gw.url)
    yield p
    p.close()


def _cost(gw: GatewayProcess, agent: str) -> Decimal:
    with gw.client() as admin:
        resp = admin.get(f"/v1/mesh/agents/{quote(agent, safe='')}")
    return Decimal(resp.json()["windows"]["day"]["cost_usd"]) if resp.status_code == 200 else Decimal(0)


def _policy(gw: GatewayProcess, agent: str, **fields: object) -> None:
    with gw.client() as admin:
        resp = admin.put(f"/v1/mesh/agents/{quote(agent, safe='')}/policies/cost", json=fields)
    assert resp.status_code in (200, 201), resp.text


def _child_env(url: str, key: str | None, spool: Path, *, agent: str | None = None, interval: str = "3600") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXME_")}
    env.update(AXME_GATEWAY_URL=url, AXME_METER_SPOOL_DIR=str(spool), AXME_HEARTBEAT_INTERVAL=interval)
    env["PYTHONPATH"] = str(ROOT)
    if key is not None:
        env["AXME_API_KEY"] = key
    if agent is not None:
        env["CHILD_AGENT"] = agent
    return env


def _child(mode: str, env: dict[str, str], calls: int = 0) -> dict:
    done = subprocess.run([sys.executable, CHILD, mode, str(calls)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[0])
    out["stderr"] = done.stderr
    return out


def _pending_files(spool: Path, url: str, key: str | None) -> list[Path]:
    return sorted((spool / namespace(url, key)).glob("proc-*.json"))


# ---------------------------------------------------------------------- 1. one refused entry


def test_a_refused_entry_left_in_the_spool_does_not_switch_enforcement_off(gw: GatewayProcess, proxy: LossyProxy,
                                                                          tmp_path: Path, client, openai_http) -> None:
    """Another process booked spend for an agent its key may not write, during an outage, and exited:
    that entry sits in the shared spool. A budgeted agent of a later process is still metered and blocked."""
    key = gw.create_key("acme")
    spool = tmp_path / "spool"
    proxy.mode = "down"
    left = _child("exit", _child_env(proxy.url, key, spool, agent=FOREIGN), calls=2)
    assert Decimal(left["cost"]) == 2 * CALL and _pending_files(spool, proxy.url, key)  # left in the spool
    proxy.mode = "ok"

    limit = Decimal("0.02")
    _policy(gw, AGENT, max_cost_per_day_usd=str(limit), action_on_breach="block")
    axme_meter.configure(gateway_url=proxy.url, api_key=key, spool_dir=spool, heartbeat_interval=0.2)
    raised = None
    with axme_meter.agent(AGENT):
        for _ in range(20):
            try:
                chat(client)
            except axme_meter.BudgetExceeded as exc:
                raised = exc
                break
            axme_meter.flush(timeout=10)  # every answer carries the agent's budget
    assert raised is not None and raised.policy == "max_cost_per_day_usd", "the budget was never enforced"
    spent = axme_meter.spend().cost_usd
    assert spent <= limit + CALL and openai_http.requests == spent / CALL
    result = axme_meter.flush(timeout=10)
    assert _cost(gw, AGENT) == spent  # every cent of this process's spend reached the gateway
    assert _cost(gw, FOREIGN) == 0
    assert result.refused_usd == 2 * CALL and not result.some_pending  # (one entry, or two if A's first send was tried)
    assert axme_meter.transport_status()["quarantined"]["by_agent"][FOREIGN]["reason"].startswith("forbidden")
    assert not _pending_files(spool, proxy.url, key)  # nothing is waiting to block the next process


def test_an_older_gateway_refusing_the_whole_batch_is_split_around_the_bad_entry(tmp_path: Path, client) -> None:
    """Against a gateway that answers 403 to a whole batch for one foreign entry, the client splits the
    batch: the good entries are delivered and the foreign one is quarantined."""
    from support.gateway_stub import StubGateway

    stub = StubGateway()
    try:
        stub.keys, stub.legacy = {"k-acme": "acme"}, True
        axme_meter.configure(gateway_url=stub.url, api_key="k-acme", spool_dir=tmp_path / "spool", heartbeat_interval=3600)
        for agent in (AGENT, FOREIGN, "agent://acme/prod/writer", AGENT):
            with axme_meter.agent(agent), axme_meter.intent(f"int_{len(stub.requests)}_{agent[-6:]}"):
                chat(client)
        result = axme_meter.flush(timeout=10)
        assert result.refused_entries == 1 and result.pending_entries == 0
        assert stub.total_cost() == 3 * CALL and stub.total_cost(FOREIGN) == 0
        assert any(r["body"]["heartbeats"] and len(r["body"]["heartbeats"]) == 1 for r in stub.requests)  # it split
    finally:
        stub.close()


# ---------------------------------------------------------------------- 2. large sums


class BigCalls(CountingOpenAI):
    """Each call is 1,000,000,000 input tokens of gpt-4o: $2,500.00."""

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return httpx.Response(200, json=chat_body(MODEL, prompt=1_000_000_000, completion=0))


def test_an_outage_with_more_than_10000_dollars_is_delivered_to_the_cent(gw: GatewayProcess, proxy: LossyProxy,
                                                                        tmp_path: Path) -> None:
    key = gw.create_key("acme")
    _policy(gw, AGENT, max_cost_per_day_usd="10000", action_on_breach="block")
    axme_meter.configure(gateway_url=proxy.url, api_key=key, spool_dir=tmp_path / "spool", heartbeat_interval=3600)
    big = BigCalls()
    client = axme_meter.OpenAI(api_key="sk-test", base_url="http://openai.test/v1", max_retries=0,
                               http_client=httpx.Client(transport=httpx.MockTransport(big.handler)))
    proxy.mode = "down"
    with axme_meter.agent(AGENT):
        for _ in range(5):
            chat(client)
        chat(axme_meter.OpenAI(api_key="sk-test", base_url="http://openai.test/v1", max_retries=0,
                               http_client=httpx.Client(transport=httpx.MockTransport(CountingOpenAI().handler))))
    spent = axme_meter.spend().cost_usd
    assert spent == Decimal("12500.0075")
    assert not axme_meter.flush(timeout=0.5)  # one entry holds all of it: it waits in the spool
    proxy.mode = "ok"
    assert axme_meter.flush(timeout=10)
    assert _cost(gw, AGENT) == spent  # every cent, exactly once
    # The gateway saw it all, so the $10,000/day block holds (a restart no longer gets a fresh budget).
    wait_for(lambda: AGENT in _runtime.default().blocked_agents(), what="the block")
    with axme_meter.agent(AGENT), pytest.raises(axme_meter.BudgetExceeded):
        chat(client)
    assert big.requests == 5


def test_spend_beyond_what_one_entry_may_hold_travels_in_several(gw: GatewayProcess, proxy: LossyProxy, tmp_path: Path) -> None:
    """The gateway stores at most $1,000,000 per entry: the client starts new entries and loses nothing."""
    from axme_meter._meter import CallRecord
    from axme_meter._pricing import Usage

    key = gw.create_key("acme")
    axme_meter.configure(gateway_url=proxy.url, api_key=key, spool_dir=tmp_path / "spool", heartbeat_interval=3600)
    proxy.mode = "down"
    per_call = 9_999_990_000_000_001  # $9,999.990000000001 (pico-dollars), just under the per-call limit
    for _ in range(250):  # $2,499,997.50...: three entries' worth
        _runtime.default().book(CallRecord(AGENT, "int_runaway", MODEL, Usage(input_tokens=1, output_tokens=1), per_call,
                                           True, False, "v1"))
    assert not axme_meter.flush(timeout=0.5)
    proxy.mode = "ok"
    assert axme_meter.flush(timeout=10)
    assert _cost(gw, AGENT) == Decimal(250 * per_call).scaleb(-12)


# ---------------------------------------------------------------------- 3. keys and URLs


def test_spool_files_are_sent_only_under_the_key_and_url_they_were_booked_with(gw: GatewayProcess, proxy: LossyProxy,
                                                                               tmp_path: Path) -> None:
    org_key = gw.create_key("acme")
    spool = tmp_path / "spool"
    proxy.mode = "down"
    booked = _child("exit", _child_env(proxy.url, org_key, spool), calls=3)
    assert Decimal(booked["cost"]) == 3 * CALL
    state = _pending_files(spool, proxy.url, org_key)
    assert len(state) == 1
    proxy.mode = "ok"

    # A process with the admin key, and the CLI, on the same gateway and spool directory: they leave it alone.
    other = _child("flush", _child_env(proxy.url, gw.admin_key, spool))
    assert other["flushed"] is True
    cli = subprocess.run([sys.executable, "-m", "axme_meter", "report"], env=_child_env(proxy.url, gw.admin_key, spool),
                         capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert cli.returncode == 0, cli.stderr
    assert _pending_files(spool, proxy.url, org_key) == state and _cost(gw, AGENT) == 0  # nothing sent under another key

    # A process with the key it was booked under sends it.
    assert _child("flush", _child_env(proxy.url, org_key, spool))["flushed"] is True
    assert _cost(gw, AGENT) == 3 * CALL and not _pending_files(spool, proxy.url, org_key)


def test_spend_for_a_gateway_that_moved_is_listed_and_retargeted(gw: GatewayProcess, proxy: LossyProxy, tmp_path: Path) -> None:
    key = gw.create_key("acme")
    spool = tmp_path / "spool"
    proxy.mode = "down"
    _child("exit", _child_env(proxy.url, key, spool), calls=2)
    proxy.close()  # the old address is gone for good; the gateway now lives at gw.url
    new_env = _child_env(gw.url, key, spool)
    assert _child("flush", new_env)["flushed"] is True and _cost(gw, AGENT) == 0  # another URL: not adopted

    listed = subprocess.run([sys.executable, "-m", "axme_meter", "spool", "list", "--json"], env=new_env,
                            capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert listed.returncode == 0, listed.stderr
    rows = {r["dir"]: r for r in json.loads(listed.stdout)}
    old = rows[namespace(proxy.url, key)]
    assert old["gateway_url"] == proxy.url and old["pending_entries"] >= 1 and old["pending_usd"] == "0.015"
    assert old["current"] is False and key not in listed.stdout and old["key_prefix"] in key[:12] + "…"
    text = subprocess.run([sys.executable, "-m", "axme_meter", "spool", "list"], env=new_env, capture_output=True,
                          text=True, timeout=60, cwd=str(ROOT)).stdout
    assert f"axme-meter spool retarget {old['dir']}" in text

    moved = subprocess.run([sys.executable, "-m", "axme_meter", "spool", "retarget", old["dir"]], env=new_env,
                           capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert moved.returncode == 0, moved.stderr
    assert f"moved {old['pending_entries']} unsent entries ($0.015)" in moved.stdout
    assert _child("flush", new_env)["flushed"] is True
    assert _cost(gw, AGENT) == 2 * CALL


def test_the_gateway_process_never_adopts_a_client_spool(tmp_path: Path) -> None:
    """Even with a client's AXME_GATEWAY_URL / AXME_API_KEY / AXME_METER_SPOOL_DIR in its environment."""
    spool = tmp_path / "spool"
    with running_gateway(tmp_path / "gw0") as first:
        url, key = first.url, first.admin_key
    state = dead_process_spool(spool, url, key, [wire_entry("hb_0000dead0001_1_1", AGENT, "0.03")])
    before = state.read_bytes()
    env = {"AXME_GATEWAY_URL": url, "AXME_API_KEY": key, "AXME_METER_SPOOL_DIR": str(spool)}
    with GatewayProcess(tmp_path / "gw1", env=env) as second, second.client() as http:
        assert http.post("/v1/mesh/heartbeat", json={"heartbeats": [wire_entry("hb_x_1_1", AGENT, "0.01")]}).status_code == 200
    assert state.read_bytes() == before and sorted(p.name for p in state.parent.iterdir()) == [state.name]


# ---------------------------------------------------------------------- 4. malformed spool files


def test_malformed_spool_files_are_set_aside_and_every_good_one_replayed(gw: GatewayProcess, tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    key = gw.create_key("acme")
    spool = tmp_path / "spool"
    good = [dead_process_spool(spool, gw.url, key, [wire_entry(f"hb_g00d0000000{i}_1_1", AGENT, "0.25")]) for i in range(2)]
    bad = {
        "garbage": dead_process_spool(spool, gw.url, key, raw=b"\x00\xffnot json at all"),
        "truncated": dead_process_spool(spool, gw.url, key, raw=json.dumps({"entries": [wire_entry("hb_t_1_1", AGENT, "9")]}
                                                                            ).encode()[:40]),
        "empty": dead_process_spool(spool, gw.url, key, raw=b""),
        "entries not a list": dead_process_spool(spool, gw.url, key, raw=b'{"entries": 5}'),
        "a list": dead_process_spool(spool, gw.url, key, raw=b"[1, 2]"),
    }
    mixed = dead_process_spool(spool, gw.url, key, [{**wire_entry("hb_m1xed0000001_1_1", AGENT, "9"), "metrics": [1, 2]},
                                                    wire_entry("hb_m1xed0000002_1_1", AGENT, "0.5")])
    caplog.set_level(logging.WARNING, logger="axme_meter")
    axme_meter.configure(gateway_url=gw.url, api_key=key, spool_dir=spool, heartbeat_interval=3600)
    assert axme_meter.flush(timeout=10)
    assert _cost(gw, AGENT) == Decimal("1.00")  # both good files and the valid entry of the mixed one
    for path in [*bad.values(), mixed]:
        assert not path.exists() and path.with_name(path.name + ".corrupt").exists()
    warned = "\n".join(r.getMessage() for r in caplog.records)
    for path in bad.values():
        assert f"spool file {path.name} is not a valid spool file" in warned
    assert all(not p.exists() for p in good)

    # Recovery keeps working for the processes after it: a later dead process's spool is replayed too.
    dead_process_spool(spool, gw.url, key, [wire_entry("hb_1a7e00000001_1_1", AGENT, "0.125")])
    assert _child("flush", _child_env(gw.url, key, spool))["flushed"] is True
    assert _cost(gw, AGENT) == Decimal("1.125")


# ---------------------------------------------------------------------- 5. auth errors and conflicts


def test_an_unknown_key_is_unauthorized_said_once_and_not_retried_in_a_loop(gw: GatewayProcess, tmp_path: Path, client,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    bad_key = "axme_sa_this_key_was_revoked_long_ago_0123456789"
    caplog.set_level(logging.INFO, logger="axme_meter")
    axme_meter.configure(gateway_url=gw.url, api_key=bad_key, spool_dir=tmp_path / "spool", heartbeat_interval=0.05)
    with axme_meter.agent(AGENT):
        chat(client)
        chat(client)
    wait_for(lambda: axme_meter.transport_status()["state"] == "unauthorized", what="the 401")
    for _ in range(3):
        result = axme_meter.flush(timeout=2)
        assert not result and result.some_pending and result.pending_usd == 2 * CALL and result.state == "unauthorized"
    status = axme_meter.transport_status()
    assert status["state"] == "unauthorized" and status["retry_in"] >= 60  # slow, not a hot loop
    said = [r for r in caplog.records if "refused the API key" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.ERROR
    message = said[0].getMessage()
    assert gw.url in message and "axme_sa_this…" in message and "AXME_API_KEY" in message
    assert not [r for r in caplog.records if "unreachable" in r.getMessage()]  # not mistaken for an outage
    assert bad_key not in "\n".join(r.getMessage() for r in caplog.records) + repr(status)


def test_a_script_with_a_revoked_key_says_so_on_stderr(gw: GatewayProcess, tmp_path: Path) -> None:
    out = _child("exit", _child_env(gw.url, "axme_sa_revoked_revoked_revoked_revoked", tmp_path / "spool"), calls=1)
    assert "refused the API key axme_sa_revo…" in out["stderr"] and "HTTP 401" in out["stderr"]
    assert "unreachable" not in out["stderr"]


def test_an_agent_the_key_may_not_write_is_forbidden_and_quarantined(gw: GatewayProcess, tmp_path: Path, client,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    key = gw.create_key("acme")
    caplog.set_level(logging.WARNING, logger="axme_meter")
    axme_meter.configure(gateway_url=gw.url, api_key=key, spool_dir=tmp_path / "spool", heartbeat_interval=3600)
    with axme_meter.agent(FOREIGN):
        chat(client)
        chat(client)
    with axme_meter.agent(AGENT):
        chat(client)
    result = axme_meter.flush(timeout=10)
    assert not result and result.outcome == "refused" and result.refused_usd == 2 * CALL
    status = axme_meter.transport_status()
    assert status["state"] == "forbidden" and status["forbidden_agents"] == [FOREIGN]
    assert _cost(gw, AGENT) == CALL and _cost(gw, FOREIGN) == 0
    warnings = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(warnings) == 1
    assert FOREIGN in warnings[0] and "$0.015" in warnings[0] and "forbidden" in warnings[0] and "axme-meter spool" in warnings[0]
    with axme_meter.agent(FOREIGN):
        chat(client)
    assert not axme_meter.flush(timeout=10)
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1  # once per agent


def test_an_idempotency_conflict_is_quarantined_not_silently_dropped(gw: GatewayProcess, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    key = gw.create_key("acme")
    spool = tmp_path / "spool"
    dead_process_spool(spool, gw.url, key, [wire_entry("hb_c0ff11c70001_1_1", AGENT, "0.5")])
    assert _child("flush", _child_env(gw.url, key, spool))["flushed"] is True
    other_agent = "agent://acme/prod/other"
    dead_process_spool(spool, gw.url, key, [wire_entry("hb_c0ff11c70001_1_1", AGENT, "0.8"),
                                            {**wire_entry("hb_c0ff11c70001_1_1", other_agent, "0.5")}])
    caplog.set_level(logging.WARNING, logger="axme_meter")
    axme_meter.configure(gateway_url=gw.url, api_key=key, spool_dir=spool, heartbeat_interval=3600)
    result = axme_meter.flush(timeout=10)
    assert not result and result.refused_entries == 1 and result.refused_usd == Decimal("0.8")
    assert _cost(gw, AGENT) == Decimal("0.5")  # the first content stands; nothing of the second was booked
    assert any("conflict" in r.getMessage() and "$0.80" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------- the spool command


def test_quarantined_spend_is_listed_resent_with_a_key_that_may_write_it_and_discarded(
        gw: GatewayProcess, tmp_path: Path, client) -> None:
    key = gw.create_key("acme")
    spool = tmp_path / "spool"
    axme_meter.configure(gateway_url=gw.url, api_key=key, spool_dir=spool, heartbeat_interval=3600)
    for agent in (FOREIGN, "agent://elsewhere/prod/x"):
        with axme_meter.agent(agent):
            chat(client)
    assert axme_meter.flush(timeout=10).refused_entries == 2
    env = _child_env(gw.url, key, spool)

    def spool_cli(*args: str, key_override: str | None = None) -> subprocess.CompletedProcess[str]:
        run_env = dict(env)
        if key_override:
            run_env["AXME_API_KEY"] = key_override
        return subprocess.run([sys.executable, "-m", "axme_meter", "spool", *args], env=run_env, capture_output=True,
                              text=True, timeout=60, cwd=str(ROOT))

    shown = spool_cli("quarantine", "--json")
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert {r["agent"] for r in rows} == {FOREIGN, "agent://elsewhere/prod/x"}
    assert all(r["code"] == "forbidden" and r["cost_usd"] == "0.0075" for r in rows)
    theirs = next(r["id"] for r in rows if r["agent"] == FOREIGN)
    text = spool_cli("quarantine").stdout
    assert theirs in text and "forbidden" in text

    # Re-sent with the same key: still refused, still kept, exit status 1.
    again = spool_cli("resend", theirs)
    assert again.returncode == 1 and "still refused" in again.stdout
    # With a key that may write that org (here the super-admin key); the entry is found whichever key booked it.
    resent = spool_cli("resend", theirs, key_override=gw.admin_key)
    assert resent.returncode == 0, resent.stdout + resent.stderr
    assert "1 delivered ($0.0075)" in resent.stdout
    assert _cost(gw, FOREIGN) == CALL
    left = json.loads(spool_cli("quarantine", "--json").stdout)
    assert [r["agent"] for r in left] == ["agent://elsewhere/prod/x"]

    missing = spool_cli("discard")
    assert missing.returncode == 2 and "--all" in missing.stderr and "Traceback" not in missing.stderr
    dropped = spool_cli("discard", "--all")
    assert dropped.returncode == 0 and "discarded 1 quarantined entries ($0.0075)" in dropped.stdout
    assert json.loads(spool_cli("quarantine", "--json").stdout) == []
    assert spool_cli("resend", "nope").returncode == 2
