"""Worker processes that print one JSON report line (tests/transport/budget_worker.py, loop_worker.py)."""

from __future__ import annotations

import json
import subprocess
from typing import Any


def worker_report(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    """Wait for the worker, check it exited cleanly and hid no error, and return its report."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    report: dict[str, Any] = json.loads(out.splitlines()[0])
    assert not report["errors"], report
    return report
