"""Poll for a condition instead of sleeping and hoping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], what: str = "condition", *, timeout: float = 30.0) -> Any:
    """Poll until ``predicate()`` is truthy and return its value; fail naming ``what`` after ``timeout``.

    The timeout is a hang guard on a loaded machine, not a timing claim: nothing is asserted about how soon.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
