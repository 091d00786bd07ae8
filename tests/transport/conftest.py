"""Fixtures for the transport tests: a loopback stub gateway, a metered OpenAI client with a counting mock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import httpx
import pytest

import axme_meter
from axme_meter import _config, _runtime
from axme_meter._transport import _spool
from support.gateway_stub import StubGateway
from support.transport_helpers import API_KEY, CountingOpenAI

_DEFAULTS = {f.name: getattr(_config.settings, f.name) for f in fields(_config.Settings)}


@pytest.fixture(autouse=True)
def clean_transport() -> Iterator[None]:
    axme_meter.reset_spend()
    _runtime.replace_default()
    _spool._warned_unwritable = False
    yield
    _config.configure(**{k: v for k, v in _DEFAULTS.items() if k != "agent"})
    _runtime.replace_default()
    axme_meter.reset_spend()


@pytest.fixture
def gw() -> Iterator[StubGateway]:
    stub = StubGateway()
    yield stub
    stub.close()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def metered(gw: StubGateway, spool_dir: Path) -> StubGateway:
    """Gateway mode against the stub with short intervals."""
    axme_meter.configure(gateway_url=gw.url, api_key=API_KEY, spool_dir=spool_dir, heartbeat_interval=0.1)
    return gw


@pytest.fixture
def openai_http() -> CountingOpenAI:
    return CountingOpenAI()


@pytest.fixture
def client(openai_http: CountingOpenAI) -> axme_meter.OpenAI:
    return axme_meter.OpenAI(api_key="sk-test", base_url="http://openai.test/v1",
                             http_client=httpx.Client(transport=httpx.MockTransport(openai_http.handler)), max_retries=0)
