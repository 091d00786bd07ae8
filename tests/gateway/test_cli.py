"""``axme-meter gateway`` first start (admin key printed once) and ``axme-meter keys create``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from gateway_helpers import entry, send
from gateway_process import ROOT, GatewayProcess, free_port


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
