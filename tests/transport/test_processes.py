"""Process life: SIGKILL, normal exit, SIGTERM, fork, asyncio, meter-only and the URL policy."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

import axme_meter
from axme_meter import _config, _runtime
from axme_meter._transport._gateway_http import InsecureGatewayURL
from support.gateway_stub import StubGateway
from support.transport_helpers import AGENT, API_KEY, MODEL, CountingOpenAI, chat

CHILD = str(Path(__file__).with_name("child_process.py"))
CALL = Decimal("0.0075")


def _env(gw: StubGateway | None, spool_dir: Path, interval: str = "0.2") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXME_")}
    env.update(AXME_METER_SPOOL_DIR=str(spool_dir), AXME_HEARTBEAT_INTERVAL=interval, AXME_API_KEY=API_KEY)
    if gw is not None:
        env["AXME_GATEWAY_URL"] = gw.url
    return env


def _run(mode: str, env: dict[str, str], calls: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, CHILD, mode, str(calls)], env=env, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("gateway_during_child", ["down", "ok"])
def test_sigkill_loses_nothing_priced_a_second_before(gw: StubGateway, spool_dir: Path, gateway_during_child: str) -> None:
    gw.mode = gateway_during_child
    env = _env(gw, spool_dir)
    child = subprocess.Popen([sys.executable, CHILD, "hang", "5"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        priced = json.loads(child.stdout.readline())
        assert child.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # the contract: priced at least one second before the kill
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    gw.mode = "ok"
    assert json.loads(_run("flush", env).stdout)["flushed"]
    assert gw.total_calls() == priced["calls"] == 5
    assert gw.total_cost() == Decimal(priced["cost"]) == 5 * CALL
    # Nothing is left for a third process, and nothing is counted twice.
    before = gw.heartbeat_requests()
    assert json.loads(_run("flush", env).stdout)["flushed"]
    assert gw.total_cost() == 5 * CALL
    assert gw.heartbeat_requests() == before


def test_normal_exit_flushes(gw: StubGateway, spool_dir: Path) -> None:
    result = _run("exit", _env(gw, spool_dir, interval="3600"), calls=3)
    priced = json.loads(result.stdout)
    assert gw.total_cost() == Decimal(priced["cost"]) == 3 * CALL


@pytest.mark.skipif(int(__import__("openai").__version__.split(".")[0]) < 3, reason="openai 2.x uses httpx, not httpx2")
def test_an_openai_3_app_without_httpx_sends_through_httpx2(gw: StubGateway, spool_dir: Path) -> None:
    """The sender must not import ``httpx`` on its thread while openai 3.x peeks at ``sys.modules``."""
    env = _env(gw, spool_dir, interval="0.05")
    env["CHILD_NO_HTTPX"] = "1"
    priced = json.loads(_run("exit", env, calls=30).stdout)
    assert priced["httpx_imported"] is False
    assert gw.total_cost() == Decimal(priced["cost"]) == 30 * CALL


def test_exit_with_gateway_down_spools_for_the_next_process(gw: StubGateway, spool_dir: Path) -> None:
    gw.mode = "down"
    env = _env(gw, spool_dir, interval="3600")
    env_fast = dict(env)
    started = time.monotonic()
    priced = json.loads(_run("exit", env_fast, calls=2).stdout)
    assert time.monotonic() - started < 60  # a hang guard: exit is bounded by shutdown_timeout
    assert gw.total_calls() == 0
    gw.mode = "ok"
    assert json.loads(_run("flush", env).stdout)["flushed"]
    assert gw.total_cost() == Decimal(priced["cost"])


def test_sigterm_flushes_then_dies_by_sigterm(gw: StubGateway, spool_dir: Path) -> None:
    env = _env(gw, spool_dir, interval="3600")
    child = subprocess.Popen([sys.executable, CHILD, "hang", "4"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        priced = json.loads(child.stdout.readline())
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGTERM  # the previous (default) disposition still applies
    assert gw.total_cost() == Decimal(priced["cost"]) == 4 * CALL


def test_sigterm_chains_to_the_applications_own_handler(gw: StubGateway, spool_dir: Path) -> None:
    env = _env(gw, spool_dir, interval="3600")
    env["CHILD_USER_SIGTERM"] = "1"
    child = subprocess.Popen([sys.executable, CHILD, "hang", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        priced = json.loads(child.stdout.readline())
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert "user handler" in out and child.returncode == 3
    assert gw.total_cost() == Decimal(priced["cost"]) == 2 * CALL


def test_fork_child_sends_its_own_spend_and_never_the_parents(metered: StubGateway, client) -> None:
    axme_meter.configure(heartbeat_interval=3600)
    with axme_meter.agent(AGENT):
        chat(client)
        assert axme_meter.flush(timeout=10)  # the gateway knows the agent: no more immediate sends
        chat(client)
        chat(client)  # these two are pending in the parent at fork time
    parent_instance = _runtime.default().current_sender().instance
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_fd)
            with axme_meter.agent("agent://acme/prod/child"):
                chat(client)
            ok = bool(axme_meter.flush(timeout=10))
            report = {"ok": ok, "cost": str(axme_meter.spend().cost_usd), "instance": _runtime.default().current_sender().instance}
            os.write(write_fd, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        report = json.loads(pipe.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report["ok"] and report["instance"] != parent_instance
    assert Decimal(report["cost"]) == CALL  # the child's meter started clean
    assert metered.total_cost("agent://acme/prod/child") == CALL
    assert metered.total_cost(AGENT) == CALL  # the child never sent the parent's pending spend
    assert axme_meter.flush(timeout=10)
    assert metered.total_cost(AGENT) == 3 * CALL
    assert metered.total_cost() == 4 * CALL
    assert all(e["id"].split("_")[1] == parent_instance for e in metered.real_entries() if e["agent"] == AGENT)


async def test_sender_runs_beside_a_running_event_loop(metered: StubGateway, openai_http: CountingOpenAI) -> None:
    client = axme_meter.AsyncOpenAI(api_key="sk-test", base_url="http://openai.test/v1", max_retries=0,
                                    http_client=httpx.AsyncClient(transport=httpx.MockTransport(openai_http.ahandler)))
    with axme_meter.agent(AGENT):
        await asyncio.gather(*(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
                               for _ in range(10)))
    deadline = time.monotonic() + 15
    while metered.total_calls() < 10 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)  # the loop keeps running; the sender thread delivers meanwhile
    assert metered.total_cost() == axme_meter.spend().cost_usd == 10 * CALL
    metered.block(AGENT)
    with axme_meter.agent(AGENT):
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        while AGENT not in _runtime.default().blocked_agents() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        with pytest.raises(axme_meter.BudgetExceeded):
            await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert openai_http.requests == 11


def test_meter_only_mode_says_so_once_and_needs_no_network(client, caplog) -> None:
    import threading

    before = {t.ident for t in threading.enumerate()}
    caplog.set_level(logging.INFO, logger="axme_meter")
    rt = _runtime.replace_default()  # a fresh runtime has said nothing yet
    rt.apply(_config.settings)
    chat(client)
    assert axme_meter.transport_status()["mode"] == "meter-only"
    assert _runtime.default().current_sender() is None
    assert axme_meter.flush() and axme_meter.flush().all_delivered is True
    notes = [r for r in caplog.records if "meter-only" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelno == logging.INFO
    assert not [t for t in threading.enumerate() if t.ident not in before]  # no sender thread, no network


def test_plain_http_to_a_remote_host_is_refused(spool_dir: Path) -> None:
    with pytest.raises(InsecureGatewayURL, match="allow_insecure_http"):
        axme_meter.configure(gateway_url="http://gateway.example.com")
    axme_meter.configure(gateway_url="http://localhost:8080", spool_dir=spool_dir)  # loopback is fine
    axme_meter.configure(gateway_url="http://[::1]:8080")
    axme_meter.configure(gateway_url="https://gateway.example.com")
    axme_meter.configure(gateway_url="http://gateway.example.com", allow_insecure_http=True)
    assert axme_meter.transport_status()["mode"] == "gateway"


def test_plain_http_from_the_environment_runs_meter_only(tmp_path: Path) -> None:
    env = _env(None, tmp_path)
    env["AXME_GATEWAY_URL"] = "http://gateway.example.com"
    status = json.loads(_run("status", env).stdout)
    assert status["mode"] == "refused" and "allow_insecure_http" in status["reason"]
    assert API_KEY not in json.dumps(status)


def _mp_worker() -> None:
    from support.transport_helpers import new_client

    with axme_meter.agent("agent://acme/prod/mp-child"):
        chat(new_client(CountingOpenAI()))
        chat(new_client(CountingOpenAI()))


def test_multiprocessing_fork_child_flushes_on_exit(metered: StubGateway) -> None:
    """multiprocessing children end with os._exit (no atexit); their spend still arrives."""
    import multiprocessing

    axme_meter.configure(heartbeat_interval=3600)
    proc = multiprocessing.get_context("fork").Process(target=_mp_worker)
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 0
    assert metered.total_cost("agent://acme/prod/mp-child") == 2 * CALL


def test_a_full_disk_that_frees_up_resumes_the_spool_without_a_restart(gw: StubGateway, spool_dir: Path) -> None:
    """Writes fail (EFBIG), the spool goes memory-only with one warning, and the same process writes
    everything to disk again once there is room: a SIGKILL after that loses nothing."""
    gw.mode = "down"
    env = _env(gw, spool_dir)
    script = str(Path(__file__).with_name("child_disk_full.py"))
    child = subprocess.Popen([sys.executable, script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        priced = json.loads(child.stdout.readline())
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGKILL)
        _, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert priced["calls"] == priced["spooled_calls"] == 3  # the calls made while the disk was full are on disk now
    assert stderr.count("is not writable") == 1 and stderr.count("is writable again") == 1
    gw.mode = "ok"
    assert json.loads(_run("flush", env).stdout)["flushed"]
    assert gw.total_cost() == Decimal(priced["cost"]) == 3 * CALL
