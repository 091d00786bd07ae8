"""In-process gateway for route tests: ``create_app`` on a SQLite file, driven through ``httpx.ASGITransport``.

No subprocess, no port: fast enough for many small cases (policy evaluation, error
bodies, validation, key scopes). Replicas, SIGKILL and the CLI keep using real
processes (``gateway_process``).

    async with inprocess_gateway(tmp_path) as gw:
        resp = await gw.http.get("/v1/mesh/agents")            # admin key by default
        resp = await gw.http.get(..., headers={"x-api-key": other})
        gw.set_clock("2026-11-29T00:00:01Z")
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from axme_meter.gateway import Settings, create_app

START = "2026-11-28T12:00:00Z"


@dataclass
class InProcessGateway:
    http: httpx.AsyncClient
    admin_key: str
    clock_file: Path
    app: object

    def set_clock(self, iso_timestamp: str) -> None:
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(iso_timestamp)
        os.replace(tmp, self.clock_file)

    async def create_key(self, org: str, *, admin: bool = False, agent: str | None = None, key: str | None = None) -> str:
        resp = await self.http.post("/v1/keys", json={"org": org, "admin": admin, "agent": agent},
                                    headers={"x-api-key": key or self.admin_key})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["key"])


@asynccontextmanager
async def inprocess_gateway(workdir: Path, *, clock: str = START, db_url: str | None = None, dashboard: bool = False,
                            **settings: object) -> AsyncIterator[InProcessGateway]:
    """``db_url`` defaults to a SQLite file in ``workdir`` (the conftest's ``db_url`` fixture gives PostgreSQL too);
    ``dashboard`` mounts ``/dashboard`` as ``axme-meter gateway`` does."""
    admin_key = "axme_sa_inproc_" + secrets.token_hex(16)
    clock_file = workdir / "clock.txt"
    clock_file.write_text(clock)
    extra = []
    if dashboard:
        from axme_meter.gateway.dashboard import dashboard_routes

        extra = dashboard_routes()
    app = create_app(Settings(db_url=db_url or f"sqlite:///{workdir / 'gw.sqlite3'}", admin_key=admin_key, clock_file=str(clock_file),
                              **settings), extra_routes=extra)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    gateway = app.state.gateway  # type: ignore[attr-defined]
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test",
                                     headers={"x-api-key": admin_key}) as http:
            yield InProcessGateway(http, admin_key, clock_file, app)
    finally:
        gateway.dispatcher.close()
        gateway.engine.dispose()
