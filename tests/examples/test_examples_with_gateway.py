"""Examples that talk to a gateway, run against a real ``axme-meter gateway`` process on loopback."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.examples_support import run_example

from axme_meter.cli._policy import GatewayAPI
from axme_meter.demo._gateway import EmbeddedGateway

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("axme_meter.cli._gateway") is None or importlib.util.find_spec("axme_meter.gateway") is None,
    reason="the embedded gateway (axme-meter gateway) is not in this tree yet",
)
AGENT = "agent://acme/production/research-agent"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedGateway]:
    with EmbeddedGateway(tmp_path_factory.mktemp("gateway")) as running:
        yield running


@pytest.fixture
def gateway_env(example_env: dict[str, str], gateway: EmbeddedGateway) -> dict[str, str]:
    return {**example_env, "AXME_GATEWAY_URL": gateway.url, "AXME_API_KEY": gateway.admin_key,
            "AXME_HEARTBEAT_INTERVAL": "1"}


def test_policy_from_python(gateway_env: dict[str, str], gateway: EmbeddedGateway) -> None:
    done = run_example("policy_python.py", "agent://acme/production/python-policy", env=gateway_env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["max_cost_per_day_usd"] in ("50.00", "50", 50)
    with GatewayAPI(gateway.url, gateway.admin_key) as api:
        assert str(api.get_policy("agent://acme/production/python-policy")["action_on_breach"]) == "block"


def test_policy_from_the_cli(gateway_env: dict[str, str]) -> None:
    env = {**gateway_env, "AXME_METER": f"{sys.executable} -m axme_meter"}
    done = run_example("policy_cli.sh", "agent://acme/production/cli-policy", env=env)
    assert done.returncode == 0, done.stderr
    assert "max_cost_per_day_usd" in done.stdout
    assert "cost per agent" in done.stdout or "no agents have reported" in done.stdout


def test_budget_loop_against_a_gateway_policy(gateway_env: dict[str, str], gateway: EmbeddedGateway, tmp_path: Path) -> None:
    agent = "agent://acme/production/research-agent"
    with GatewayAPI(gateway.url, gateway.admin_key) as api:
        api.put_policy(agent, {"max_cost_per_day_usd": "0.03", "action_on_breach": "block"})
    state = tmp_path / "state.json"
    done = run_example("budget_loop.py", "--state", str(state), "--max-rounds", "200", env=gateway_env)
    assert done.returncode == 3, done.stderr[-2000:]
    saved = json.loads(state.read_text())
    assert saved["stopped"]["policy"] == "max_cost_per_day_usd"
    with GatewayAPI(gateway.url, gateway.admin_key) as api:
        report = api.costs(agent, "day")
    assert report  # the gateway recorded the loop's spend
