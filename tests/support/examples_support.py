"""Helpers shared by the example tests (a uniquely named module: several test dirs have a conftest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    path = EXAMPLES / name
    command = ["bash", str(path), *args] if name.endswith(".sh") else [sys.executable, str(path), *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
