"""``import axme_meter`` has no side effects; the CLI never starts a sender or adopts spools.

Each check runs in a fresh interpreter with a gateway configured in the environment,
because that is where a side effect at import would show: a thread, a spool
directory, an adopted spool file, a network warning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXME_")}
    env.update(AXME_GATEWAY_URL="http://127.0.0.1:9", AXME_API_KEY="axme_sa_never_used",
               AXME_METER_SPOOL_DIR=str(tmp_path / "spool"), PYTHONPATH=str(ROOT))
    return env


def _orphan_spool(tmp_path: Path) -> Path:
    """A dead process's unsent entry, where any process for this gateway would find and adopt it."""
    from axme_meter._transport._spool import namespace

    directory = tmp_path / "spool" / namespace("http://127.0.0.1:9", "axme_sa_never_used")
    directory.mkdir(parents=True)
    state = directory / "proc-deadbeef0001.json"
    state.write_text(json.dumps({"instance": "deadbeef0001", "pid": 1, "entries": [{
        "id": "hb_deadbeef0001_1_1", "agent": "agent://acme/prod/bot", "window_start": "2026-11-28T23:00:00Z",
        "window_end": "2026-11-28T23:00:30Z", "metrics": {"cost_usd": "0.03", "llm_calls": 1}}]}))
    return state


def test_import_installs_nothing(tmp_path: Path) -> None:
    code = ("import threading, axme_meter; from axme_meter import _runtime; "
            "print(_runtime.current() is None, threading.active_count())")
    out = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "1"]
    assert out.stderr == ""
    assert not (tmp_path / "spool").exists()


def test_the_first_client_installs_the_runtime(tmp_path: Path) -> None:
    code = ("import axme_meter; from axme_meter import _runtime; axme_meter.OpenAI(api_key='sk-x'); "
            "print(_runtime.current() is not None, axme_meter.transport_status()['mode'])")
    out = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "gateway"]


@pytest.mark.parametrize("command", [["price", "gpt-4o", "--input", "1000"], ["prices", "gpt-4o*"],
                                     ["spool", "list"]])
def test_cli_neither_sends_nor_adopts_spools(tmp_path: Path, command: list[str]) -> None:
    state = _orphan_spool(tmp_path)
    before = state.read_text()
    out = subprocess.run([sys.executable, "-m", "axme_meter", *command], env=_env(tmp_path),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    assert out.stderr == ""  # offline: no network warnings
    assert state.read_text() == before  # still there, untouched: only a client of that gateway and key adopts it
    assert sorted(p.name for p in state.parent.iterdir()) == [state.name]
