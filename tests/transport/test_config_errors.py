"""Bad settings raise one clear ``axme_meter.ConfigError`` (variable, accepted form) when they are first used,
never on a metered call, and never break ``import axme_meter`` (the gateway and the CLI import it too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import axme_meter
from support.gateway_process import ROOT

SCRIPT = """
import json, axme_meter
out = {}
try:
    axme_meter.OpenAI(api_key="sk-test")
    out["first"] = "ok"
except axme_meter.ConfigError as exc:
    out["first"] = [type(exc).__name__, exc.variable, str(exc), isinstance(exc, ValueError)]
try:
    axme_meter.transport_status()
    out["again"] = "ok"
except axme_meter.ConfigError as exc:
    out["again"] = exc.variable
print(json.dumps(out))
"""


def _run(code: str, **env_vars: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXME_")}
    env.update(env_vars)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("AXME_HEARTBEAT_INTERVAL", "abc", "a number of seconds greater than 0"),
    ("AXME_HEARTBEAT_INTERVAL", "-5", "a number of seconds greater than 0"),
    ("AXME_AGENT", "research-agent", "agent://"),
    ("AXME_METER_STRICT_PRICING", "perhaps", "one of 1, true, yes, 0, false, no"),
])
def test_a_bad_environment_variable_is_one_config_error_at_first_use(variable: str, value: str, expected: str) -> None:
    out = _run(SCRIPT, **{variable: value})
    name, named, message, is_value_error = out["first"]
    assert name == "ConfigError" and named == variable and is_value_error
    assert expected in message and repr(value) in message
    assert out["again"] == variable  # still wrong: still said (at use, not on every call)


def test_configure_replaces_a_bad_environment_value_and_calls_never_raise_it() -> None:
    code = """
import json, httpx, axme_meter
from support.openai_mock import chat_body
axme_meter.configure(heartbeat_interval=5)
client = axme_meter.OpenAI(api_key="sk-test", base_url="http://openai.test/v1", max_retries=0,
    http_client=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=chat_body()))))
for _ in range(3):
    client.chat.completions.create(model="gpt-4o-2024-08-06", messages=[{"role": "user", "content": "hi"}])
print(json.dumps({"calls": axme_meter.spend().calls}))
"""
    out = _run(code, AXME_HEARTBEAT_INTERVAL="abc")
    assert out == {"calls": 3}


def test_the_cli_is_not_stopped_by_a_client_setting() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXME_")}
    env.update(AXME_HEARTBEAT_INTERVAL="abc", AXME_AGENT="nope", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "axme_meter", "price", "gpt-4o", "--input", "1000"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert done.returncode == 0 and "$" in done.stdout, done.stderr


@pytest.mark.parametrize(("setting", "value"), [("heartbeat_interval", "abc"), ("heartbeat_interval", 0),
                                                ("fail_after", "soon"), ("shutdown_timeout", -1), ("fail_mode", "ajar")])
def test_configure_names_the_setting_and_the_accepted_form(setting: str, value: object, tmp_path: Path) -> None:
    with pytest.raises(axme_meter.ConfigError) as info:
        axme_meter.configure(**{setting: value})
    assert info.value.variable == setting and repr(value) in str(info.value)
    assert isinstance(info.value, ValueError)
