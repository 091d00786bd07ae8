"""Key revocation through real gateway processes: two replicas on one database, direct deletion, and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.gateway_process import ROOT, GatewayProcess

#: what the gateway promises: a revoked key is refused by every replica within this many seconds
REVOCATION_BOUND = 1.0


@pytest.fixture
def replicas(tmp_path: Path, db_url: str) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    a = GatewayProcess(tmp_path / "a", db_url=db_url)
    b = GatewayProcess(tmp_path / "b", db_url=db_url, admin_key=a.admin_key)
    with a, b:
        yield a, b


def _status(gw: GatewayProcess, key: str) -> int:
    with gw.client(key) as http:
        return http.get("/v1/mesh/agents").status_code


def _warm(key: str, *gateways: GatewayProcess) -> None:
    """Use the key on every replica (several times), so each has it in its in-process cache."""
    for gw in gateways:
        assert [_status(gw, key) for _ in range(3)] == [200, 200, 200]


def test_a_revoked_key_is_refused_on_every_replica_within_a_second(replicas: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = replicas
    key = a.create_key("acme", admin=True)
    other = a.create_key("acme")
    _warm(key, a, b)
    _warm(other, a, b)
    with a.client(key) as http:
        listed = http.get("/v1/keys").json()["keys"]
        assert {k["prefix"] for k in listed} == {key[:16], other[:16]}
        assert next(k for k in listed if k["prefix"] == key[:16])["current"] is True
        resp = http.delete(f"/v1/keys/{other[:16]}")
    assert resp.status_code == 200 and resp.json()["revoked"]["prefix"] == other[:16]
    assert _status(a, other) == 401  # the revoking replica: at once
    time.sleep(REVOCATION_BOUND)  # the promised bound, not a wait for a condition
    assert _status(b, other) == 401 and _status(a, other) == 401
    assert _status(b, key) == 200  # the revoking key itself is untouched
    with b.client() as http:
        events = http.get("/v1/mesh/events", params={"type": "key.revoked"}).json()["events"]
    assert [(e["data"]["prefix"], e["data"]["by"]) for e in events] == [(other[:16], key[:16])]


def test_a_key_deleted_from_the_database_is_refused_within_a_second(replicas: tuple[GatewayProcess, GatewayProcess]) -> None:
    from axme_meter.gateway._db import api_keys, make_engine
    from axme_meter.gateway._store import hash_key

    a, b = replicas
    key = a.create_key("acme")
    _warm(key, a, b)
    engine = make_engine(a.db_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(api_keys.delete().where(api_keys.c.key_hash == hash_key(key))).rowcount == 1
    finally:
        engine.dispose()
    time.sleep(REVOCATION_BOUND)
    assert _status(a, key) == 401 and _status(b, key) == 401


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXME_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "axme_meter", "keys", *args], capture_output=True, text=True, env=env,
                          cwd=str(ROOT), timeout=120)


def test_keys_list_and_revoke_cli_on_the_database_and_through_a_gateway(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    with GatewayProcess(tmp_path, db_url=db) as gw:
        made = _cli("create", "--db", db, "--org", "acme", "--agent", "agent://acme/prod/cli")
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        listed = _cli("list", "--db", db)
        assert listed.returncode == 0 and key[:16] in listed.stdout and "agent://acme/prod/cli" in listed.stdout
        assert key not in listed.stdout
        over_http = _cli("list", "--gateway", gw.url, "--api-key", gw.admin_key)
        assert over_http.returncode == 0 and key[:16] in over_http.stdout
        assert _status(gw, key) == 200
        revoked = _cli("revoke", key[:16], "--gateway", gw.url, "--api-key", gw.admin_key)
        assert revoked.returncode == 0 and revoked.stdout.startswith(f"revoked {key[:16]}"), revoked.stderr
        assert _status(gw, key) == 401
        again = _cli("revoke", key[:16], "--db", db)
        assert again.returncode == 1 and again.stderr.count("\n") == 1 and "not found" in again.stderr
        assert "Traceback" not in again.stderr
        second = _cli("create", "--db", db, "--org", "acme").stdout.strip()
        by_whole_key = _cli("revoke", second, "--db", db)
        assert by_whole_key.returncode == 0 and second[:16] in by_whole_key.stdout
        time.sleep(REVOCATION_BOUND)
        assert _status(gw, second) == 401
        with gw.client() as http:
            events = http.get("/v1/mesh/events", params={"types": "key.created,key.revoked"}).json()["events"]
        assert sorted((e["type"], e["data"]["by"]) for e in events) == [
            ("key.created", "cli"), ("key.created", "cli"), ("key.revoked", gw.admin_key[:16]), ("key.revoked", "cli")]
        wrong = _cli("list", "--gateway", gw.url, "--api-key", "axme_sa_nope")
        assert wrong.returncode == 1 and "401" in wrong.stderr and "Traceback" not in wrong.stderr
        both = _cli("list", "--gateway", gw.url, "--db", db)
        assert both.returncode == 2 and "not both" in both.stderr
