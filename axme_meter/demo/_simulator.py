"""A simulated OpenAI-compatible endpoint on loopback, for the demo, tests and benchmarks.

This is a simulator, not a mock of any one test: a real HTTP server (Starlette on
uvicorn) bound to 127.0.0.1 on a free port, speaking the OpenAI wire format for
chat completions (JSON and SSE, with the usage-only chunk only when
``stream_options.include_usage`` is set), the Responses API (JSON and SSE events
ending in ``response.completed``) and embeddings. It generates no real language:
the text is drawn from one-token words, and the usage is what OpenAI would bill
for that prompt and that many tokens. See :class:`SimulatorConfig` for knobs.

Usage::

    with Simulator(SimulatorConfig(seed=7)) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="sk-sim")
        ...
        sim.stats.requests

Or stand-alone: ``axme-meter simulate --port 8700`` (``axme_meter/cli/_simulate.py``).
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from ._app import create_app
from ._config import SimulatorConfig, SimulatorState, SimulatorStats

__all__ = ["Simulator", "SimulatorConfig", "SimulatorStats"]


class Simulator:
    """Runs the simulator in a background thread; ``with`` starts it and stops it.

    ``base_url`` ends in ``/v1`` so it can be passed straight to ``openai.OpenAI(base_url=...)``.
    """

    def __init__(self, config: SimulatorConfig | None = None, *, port: int = 0) -> None:
        self.config = config or SimulatorConfig()
        self.app = create_app(self.config)
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def state(self) -> SimulatorState:
        return self.app.state.sim

    @property
    def stats(self) -> SimulatorStats:
        """A consistent copy of the counters (requests, streams, cuts, billed tokens)."""
        return self.state.stats()

    def start(self, timeout: float = 10.0) -> Simulator:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this. Without it, a response's body waits for the client's
        # delayed ACK of the headers (Nagle): about 40 ms per request on Linux loopback.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, self._port))
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
            backlog=2048,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="axme-simulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the OpenAI simulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m axme_meter.demo._simulator``: kept for old notes; the command is ``axme-meter simulate``."""
    import sys

    from ..cli import main as cli_main

    sys.exit(cli_main(["simulate", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    main()
