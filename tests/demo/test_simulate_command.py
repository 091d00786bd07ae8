"""``axme-meter simulate --port N``: the OpenAI-compatible simulator as a command a user runs next to their code."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AXME_", "OPENAI_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_simulate_serves_the_openai_sdk_and_stops_on_sigterm() -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "axme_meter", "simulate", "--port", str(port), "--seed", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=_env())
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"listening on http://127.0.0.1:{port}/v1" in first, first + (proc.stderr.read() if proc.poll() is not None else "")
        assert f"export OPENAI_BASE_URL=http://127.0.0.1:{port}/v1" in proc.stdout.readline()
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-anything", max_retries=0) as client:
            answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
        assert answer.usage is not None and answer.usage.completion_tokens > 0
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "stopped after 1 request(s)" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_simulate_on_a_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "axme_meter", "simulate", "--port", str(port)], capture_output=True,
                              text=True, env=_env(), timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1 and "listening" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "address already in use" in lines[0] and f"--port {port + 1}" in lines[0]
