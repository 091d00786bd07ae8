"""Run a real ``axme-meter gateway`` process on loopback for tests (any suite may import this).

    from support.gateway_process import GatewayProcess, running_gateway

    with running_gateway(tmp_path) as gw:          # SQLite file in tmp_path
        httpx.get(f"{gw.url}/v1/mesh/agents", headers={"x-api-key": gw.admin_key})
        key = gw.create_key("acme", agent="agent://acme/prod/bot")
        gw.set_clock("2026-11-28T23:59:00Z")       # only if started with clock=True (or a clock_file)

``GatewayProcess(db_url=…)`` shares a database between several processes (two
replicas on one PostgreSQL); ``.stop()`` is SIGTERM, ``.kill()`` is SIGKILL.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayStartError(RuntimeError):
    """The gateway exited or never answered ``/healthz``; the message carries its log tail."""


class GatewayProcess:
    """One gateway subprocess. ``db_url`` defaults to a fresh SQLite file in ``workdir``."""

    def __init__(
        self,
        workdir: Path | str | None = None,
        *,
        db_url: str | None = None,
        admin_key: str | None = None,
        clock_file: Path | str | None = None,
        clock: str | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        startup_timeout: float = 30.0,
        root: Path | str | None = None,
    ) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="axme-gw-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url or f"sqlite:///{self.workdir / 'gateway.sqlite3'}"
        self.admin_key = admin_key or "axme_sa_test_" + secrets.token_hex(16)
        self.clock_file = Path(clock_file) if clock_file else (self.workdir / "clock.txt" if clock else None)
        if clock is not None and self.clock_file is not None:
            self.set_clock(clock)
        self.extra_env = dict(env or {})
        self.extra_args = tuple(args)  # more ``axme-meter gateway`` flags, e.g. ("--proxy-headers",)
        self.startup_timeout = startup_timeout
        #: The source tree the gateway runs from (default: this checkout); benchmarks point it at an extracted
        #: older commit to measure a baseline in the same run.
        self.root = Path(root) if root is not None else ROOT
        self.port = 0
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"gateway-{secrets.token_hex(3)}.log"

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> GatewayProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AXME_")}
        env.update(AXME_GATEWAY_ADMIN_KEY=self.admin_key, PYTHONPATH=os.pathsep.join(filter(None, [str(self.root), os.environ.get("PYTHONPATH")])))
        if self.clock_file is not None:
            env["AXME_GATEWAY_CLOCK_FILE"] = str(self.clock_file)
        env.update(self.extra_env)
        for attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "axme_meter", "gateway", "--host", "127.0.0.1", "--port", str(self.port), "--db", self.db_url,
                     *self.extra_args],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=str(self.root),
                )
            if self._wait_healthy():
                return self
            if attempt == 2 or "address already in use" not in self.log_tail().lower():
                tail = self.log_tail()
                self.kill()
                raise GatewayStartError(f"gateway did not start ({self.db_url}):\n{tail}")
        raise AssertionError("unreachable")

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    return False
                try:
                    if http.get(f"{self.url}/healthz").status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (SIGKILL if it hangs)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing — a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> GatewayProcess:
        self.stop()
        return self.start()

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- helpers ---------------------------------------------------------------------------------

    def set_clock(self, iso_timestamp: str) -> None:
        """Move the gateway's "now" (needs a clock file); atomic so a request never reads half a file."""
        if self.clock_file is None:
            raise RuntimeError("start the gateway with clock=... or clock_file=... to control its clock")
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(iso_timestamp)
        os.replace(tmp, self.clock_file)

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        """An httpx client with base URL and ``x-api-key`` (the admin key by default)."""
        return httpx.Client(base_url=self.url, headers={"x-api-key": key or self.admin_key}, timeout=kwargs.pop("timeout", 30.0), **kwargs)

    def create_key(self, org: str, admin: bool = False, agent: str | None = None) -> str:
        """A new key through ``POST /v1/keys`` with the admin key."""
        with self.client() as http:
            resp = http.post("/v1/keys", json={"org": org, "admin": admin, "agent": agent})
        if resp.status_code != 201:
            raise RuntimeError(f"creating a key failed: {resp.status_code} {resp.text}")
        return str(resp.json()["key"])


@contextmanager
def running_gateway(workdir: Path | str | None = None, **kwargs: Any) -> Iterator[GatewayProcess]:
    """``with running_gateway(tmp_path) as gw:`` — started, and stopped (SIGTERM) afterwards."""
    gw = GatewayProcess(workdir, **kwargs)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()
