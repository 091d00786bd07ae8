"""Fixtures for the simulator tests: one real loopback simulator per test, plain openai clients."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

pytest.importorskip("starlette", reason="the simulator needs the 'gateway' extra (starlette, uvicorn)")
pytest.importorskip("uvicorn", reason="the simulator needs the 'gateway' extra (starlette, uvicorn)")

from axme_meter.demo._simulator import Simulator, SimulatorConfig  # noqa: E402


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(seed=42, completion_tokens=(20, 40))) as running:
        yield running


@pytest.fixture
def client(sim: Simulator) -> Iterator[openai.OpenAI]:
    """The plain openai SDK with its default HTTP client (httpx2 under openai 3.x), max_retries=0."""
    with openai.OpenAI(base_url=sim.base_url, api_key="sk-simulator", max_retries=0) as plain:
        yield plain
