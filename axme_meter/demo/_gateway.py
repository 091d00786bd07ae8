"""Start the embedded gateway as a child process on loopback, with SQLite in a temporary dir.

The demo runs the same ``axme-meter gateway`` command a user would run, so what
it shows is the real gateway enforcing a real policy over real HTTP. The admin
key is generated here and handed over through ``AXME_GATEWAY_ADMIN_KEY``, so it
is never printed unless the user asks to keep the gateway running.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayStartError(RuntimeError):
    """The gateway process exited or did not answer ``/healthz`` in time; the message has its log tail."""


class EmbeddedGateway:
    """``with EmbeddedGateway() as gw:`` gives ``gw.url`` and ``gw.admin_key``; ``keep()`` leaves it running."""

    def __init__(self, data_dir: Path | None = None, *, port: int | None = None, startup_timeout: float = 30.0) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="axme-demo-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_key = "axme_admin_demo_" + secrets.token_hex(16)
        self.db_path = self.data_dir / "gateway.sqlite3"
        self.log_path = self.data_dir / "gateway.log"
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._kept = False

    def command(self) -> list[str]:
        return [sys.executable, "-m", "axme_meter", "gateway", "--host", "127.0.0.1", "--port", str(self.port),
                "--db", f"sqlite:///{self.db_path}"]

    def start(self) -> EmbeddedGateway:
        env = {**os.environ, "AXME_GATEWAY_ADMIN_KEY": self.admin_key}
        for name in ("AXME_GATEWAY_URL", "AXME_API_KEY"):  # the child must not talk to another gateway
            env.pop(name, None)
        log = open(self.log_path, "wb")
        try:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0) as http:
            while True:
                if self.process.poll() is not None:
                    raise GatewayStartError(f"the gateway exited with code {self.process.returncode}:\n{self.log_tail()}")
                try:
                    if http.get(f"{self.url}/healthz").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise GatewayStartError(f"the gateway did not answer /healthz in {self.startup_timeout:.0f}s:\n{self.log_tail()}")
                time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no gateway log)"

    def keep(self) -> int:
        """Leave the process running after ``with`` ends; returns its pid."""
        self._kept = True
        return self.process.pid if self.process else 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedGateway:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._kept:
            self.stop()
