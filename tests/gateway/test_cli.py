"""``axme-meter gateway`` first start (admin key printed once) and ``axme-meter keys create``."""

from __future__ import annotations

import os
import socket
import re
import subprocess
import sys
from pathlib import Path

import httpx

from support.gateway_helpers import entry, send
from support.gateway_process import ROOT, GatewayProcess, free_port


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXME_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _first_lines_until_listening(db: str) -> tuple[str, subprocess.Popen[str]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "axme_meter", "gateway", "--port", str(port), "--db", db],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env(), cwd=str(ROOT))
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "listening on" in line:
            break
    return "".join(lines), proc


def test_first_start_prints_an_admin_key_once(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    out, proc = _first_lines_until_listening(db)
    try:
        key = re.search(r"(axme_sa_\S+)", out)
        assert key, out
        url = re.search(r"(http://\S+)", out.split("listening on", 1)[1]).group(1)  # type: ignore[union-attr]
        for _ in range(100):
            try:
                if httpx.get(f"{url}/v1/mesh/agents", headers={"x-api-key": key.group(1)}).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
    finally:
        proc.terminate()
        proc.wait(10)
    again, proc = _first_lines_until_listening(db)
    proc.terminate()
    proc.wait(10)
    assert "axme_sa_" not in again  # shown once only


def test_keys_create_cli(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    run = [sys.executable, "-m", "axme_meter", "keys", "create", "--db", db]
    made = subprocess.run([*run, "--org", "acme", "--agent", "agent://acme/prod/cli"], capture_output=True, text=True, env=_env(), cwd=str(ROOT))
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("axme_sa_")
    bad = subprocess.run([*run, "--org", "acme", "--agent", "agent://globex/prod/x"], capture_output=True, text=True, env=_env(), cwd=str(ROOT))
    assert bad.returncode == 2 and "not in org" in bad.stderr
    with GatewayProcess(tmp_path, db_url=db) as gw, gw.client(key) as http:
        resp = http.post("/v1/mesh/heartbeat", json={"metrics": {"cost_usd": "0.5"}})
        assert resp.status_code == 200 and list(resp.json()["agents"]) == ["agent://acme/prod/cli"]
        assert http.post("/v1/mesh/heartbeat", json=entry("agent://acme/prod/other")).status_code == 403
        assert send(http, entry("agent://acme/prod/other")).json()["results"][0]["error"]["code"] == "forbidden"
        assert http.put("/v1/mesh/agents/agent%3A%2F%2Facme%2Fprod%2Fcli/policies/cost", json={"max_cost_per_day_usd": "1"}).status_code == 403


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "axme_meter", *args], capture_output=True, text=True, env=_env(),
                          cwd=str(ROOT), timeout=timeout, stdin=subprocess.DEVNULL)


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """A user error: non-zero exit, exactly one line on stderr, no traceback, nothing announced."""
    assert done.returncode != 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr and "listening" not in done.stderr + done.stdout
    return lines[0]


def test_a_sqlite_file_in_a_missing_directory_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    line = _one_line_error(_cli("gateway", "--port", "0", "--db", "sqlite:////nonexistent/dir/x.db"))
    assert line.startswith("axme-meter gateway: ") and "/nonexistent/dir does not exist" in line and "mkdir -p /nonexistent/dir" in line
    line = _one_line_error(_cli("keys", "create", "--org", "acme", "--db", "sqlite:////nonexistent/dir/x.db"))
    assert "mkdir -p /nonexistent/dir" in line


def test_an_unsupported_database_is_one_line_naming_the_supported_ones() -> None:
    for command in (("gateway", "--port", "0"), ("keys", "create", "--org", "acme")):
        line = _one_line_error(_cli(*command, "--db", "mysql://x"))
        assert "mysql is not supported" in line and "sqlite:///" in line and "postgresql://" in line


def test_an_unreachable_postgresql_is_one_line_without_the_password() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    line = _one_line_error(_cli("gateway", "--port", "0", "--db", f"postgresql://axme:s3cret@127.0.0.1:{port}/axme"))
    assert "cannot use the database postgresql://axme:***@127.0.0.1" in line and "s3cret" not in line
    assert "the server is running" in line


def test_a_port_in_use_is_one_line_and_never_announced_as_listening(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _cli("gateway", "--host", "127.0.0.1", "--port", str(port), "--db", f"sqlite:///{tmp_path / 'gw.sqlite3'}")
    line = _one_line_error(done)
    assert f"127.0.0.1:{port}: address already in use" in line and f"--port {port + 1}" in line
    assert not (tmp_path / "gw.sqlite3").exists()  # refused before the database was touched


def test_start_prints_the_sqlite_file_before_listening(tmp_path: Path) -> None:
    db_file = tmp_path / "data" / "gw.sqlite3"
    db_file.parent.mkdir()
    out, proc = _first_lines_until_listening(f"sqlite:///{db_file}")
    proc.terminate()
    proc.wait(10)
    assert f"database SQLite file {db_file}\n" in out
    assert out.index("database SQLite file") < out.index("listening on")


def test_keys_create_refuses_an_org_that_is_not_an_address_segment(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    for org in ("bad org!", "_acme", "acme/prod", ""):
        done = _cli("keys", "create", f"--org={org}", "--db", db)
        assert done.returncode == 2 and "is not an org name" in done.stderr and "e.g. --org myorg" in done.stderr
        assert done.stdout == "" and "Traceback" not in done.stderr
    assert _cli("keys", "create", "--org", "acme.eu-1", "--db", db).stdout.startswith("axme_sa_")
    assert _cli("keys", "create", "--org", "*", "--admin", "--db", db).returncode == 0  # every org: the super-admin
