"""Integrations with the real packages, against the loopback OpenAI simulator (no network)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("uvicorn", reason="the integrations run against the simulator, which needs the 'gateway' extra")

import axme_meter  # noqa: E402
from axme_meter.demo._simulator import Simulator, SimulatorConfig  # noqa: E402


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(seed=11, completion_tokens=(20, 40))) as sim:
        yield sim


@pytest.fixture(autouse=True)
def clean_meter() -> Iterator[None]:
    axme_meter.reset_spend()
    yield
    axme_meter.reset_spend()
