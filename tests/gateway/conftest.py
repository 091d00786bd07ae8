"""Fixtures for the gateway suite: real gateway processes on loopback (SQLite; PostgreSQL when configured)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

pytest.importorskip("uvicorn", reason="the gateway tests need the 'gateway' extra (pip install 'axme_meter[gateway]')")
pytest.importorskip("sqlalchemy", reason="the gateway tests need the 'gateway' extra")

from support.gateway_process import GatewayProcess  # noqa: E402

POSTGRES_URL = os.environ.get("AXME_TEST_POSTGRES_URL")


def fresh_postgres_url() -> str:
    """A brand-new database on the configured server, so runs never see each other's rows."""
    import psycopg

    assert POSTGRES_URL
    name = "axme_gw_" + secrets.token_hex(6)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(POSTGRES_URL, name)


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name``; a query such as ``?host=/socket/dir`` (a unix socket) is kept."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def drop_postgres(url: str) -> None:
    import psycopg

    assert POSTGRES_URL
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need AXME_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    url = fresh_postgres_url()
    try:
        yield url
    finally:
        drop_postgres(url)


def _db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gw.sqlite3'}"
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need AXME_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    url = fresh_postgres_url()
    try:
        yield url
    finally:
        drop_postgres(url)


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
START = "2026-11-28T12:00:00Z"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database per test: SQLite, and PostgreSQL when AXME_TEST_POSTGRES_URL is set."""
    yield from _db_url(request, tmp_path)


@pytest.fixture(scope="module", params=BACKENDS)
def module_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _db_url(request, tmp_path_factory.mktemp("db"))


@pytest.fixture(scope="module")
def gateway(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway per module and backend (clock fixed at START); tests isolate themselves with unique agents."""
    gw = GatewayProcess(tmp_path_factory.mktemp("gw"), db_url=module_db_url, clock=START)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def clocked_gateway(tmp_path: Path, db_url: str) -> Iterator[GatewayProcess]:
    """A gateway of its own whose clock the test moves (``gw.set_clock(...)``)."""
    gw = GatewayProcess(tmp_path, db_url=db_url, clock=START)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def agent() -> str:
    """A fresh agent address in org ``acme`` (tests share module gateways)."""
    return f"agent://acme/production/bot-{secrets.token_hex(4)}"


@pytest.fixture
def sqlite_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path, clock="2026-11-28T12:00:00Z")
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def pg_replicas(tmp_path: Path, postgres_url: str) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    """Two gateway processes on one fresh PostgreSQL database, sharing the admin key and the test clock."""
    a = GatewayProcess(tmp_path / "a", db_url=postgres_url, clock="2026-11-28T12:00:00Z")
    b = GatewayProcess(tmp_path / "b", db_url=postgres_url, admin_key=a.admin_key, clock_file=a.clock_file)
    with a, b:
        yield a, b
