"""Run each example as its own process against the simulator (and a real gateway where it needs one)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("uvicorn", reason="the examples run against the simulator, which needs the 'gateway' extra")

from axme_meter.demo._simulator import Simulator, SimulatorConfig  # noqa: E402
from support.examples_support import ROOT  # noqa: E402


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(seed=3, completion_tokens=(40, 80))) as sim:
        yield sim


@pytest.fixture
def example_env(simulator: Simulator, tmp_path: Path) -> dict[str, str]:
    """The environment a user would set: OpenAI pointed at the simulator, meter-only unless a test adds a gateway."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AXME_", "OPENAI_"))}
    env.update(
        OPENAI_BASE_URL=simulator.base_url,
        OPENAI_API_KEY="sk-simulator",
        AXME_METER_SPOOL_DIR=str(tmp_path / "spool"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    return env

