"""The README's gateway section, run as written: start the gateway, create a key, export the two
variables, set a policy, run code, read the report.

The commands are read from the README's first ``bash`` block under "## The gateway", so the
README cannot drift from what works. Only what must differ in a test differs: the gateway gets
a free port (the README's 8787 is replaced in the exported URL), the per-user data dir is a temp
dir (``XDG_DATA_HOME``), ``axme_sa_…`` is the key the step before printed, and ``my_agent.py`` is
a small agent that calls the OpenAI simulator.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from axme_meter.demo._simulator import Simulator
from support.examples_support import ROOT
from support.gateway_process import free_port

AGENT_CODE = """
import axme_meter

client = axme_meter.OpenAI()
with axme_meter.agent("agent://myorg/production/research-agent"):
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "triage ticket 42"}])
axme_meter.flush(timeout=10)
"""


def readme_gateway_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## The gateway", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_readme_gateway_loop_works_as_written(tmp_path: Path, simulator: Simulator) -> None:
    commands = readme_gateway_commands()
    assert [c.split()[0] for c in commands][:3] == ["axme-meter", "axme-meter", "export"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AXME_", "OPENAI_"))}
    env.update(XDG_DATA_HOME=str(tmp_path / "data"), AXME_METER_SPOOL_DIR=str(tmp_path / "spool"),
               OPENAI_BASE_URL=simulator.base_url, OPENAI_API_KEY="sk-simulator", AXME_HEARTBEAT_INTERVAL="1", COLUMNS="200",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    (tmp_path / "my_agent.py").write_text(AGENT_CODE)
    port, gateway, key, outputs = free_port(), None, "", []
    try:
        for command in commands:
            argv = shlex.split(command)
            if argv[:2] == ["axme-meter", "gateway"]:
                gateway = subprocess.Popen([sys.executable, "-m", "axme_meter", *argv[1:], "--port", str(port)], env=env,
                                           cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE, text=True)
                started = _until_listening(gateway)
                database = tmp_path / "data" / "axme_meter" / "gateway.sqlite3"
                assert f"database SQLite file {database}" in started and "created admin key" in started
                continue
            if argv[0] == "export":
                name, _, value = argv[1].partition("=")
                env[name] = value.replace(":8787", f":{port}").replace("axme_sa_…", key)
                continue
            runner = [sys.executable, "-m", "axme_meter", *argv[1:]] if argv[0] == "axme-meter" else [sys.executable, *argv[1:]]
            done = subprocess.run(runner, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                                  stdin=subprocess.DEVNULL)
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            if argv[:3] == ["axme-meter", "keys", "create"]:
                key = done.stdout.strip()
                assert key.startswith("axme_sa_")
            outputs.append(done.stdout)
        report = outputs[-1]
        assert "agent://myorg/production/research-agent" in report and "$0.00 " not in report  # the agent's spend, shown
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"x-api-key": key}) as http:
            policy = http.get("/v1/mesh/agents/agent%3A%2F%2Fmyorg%2Fproduction%2Fresearch-agent/policies/cost").json()["policy"]
        assert policy["max_cost_per_day_usd"] == "50.00" and policy["notify"]["email"] == ["ops@example.com"]
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.wait(10)


def _until_listening(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "listening on" in line:
            return "".join(seen)
    pytest.fail("the gateway exited before listening:\n" + "".join(seen))
