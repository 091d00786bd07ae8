from __future__ import annotations

from collections.abc import Iterator

import pytest

import axme_meter
from axme_meter._client import _call
from support.openai_mock import FakeOpenAI


@pytest.fixture(autouse=True)
def clean_meter() -> Iterator[None]:
    axme_meter.reset_spend()
    _call._warned_models.clear()
    _call._warned_tiers.clear()
    yield
    axme_meter.reset_spend()


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI()
