"""Every example that needs no gateway, run as a user would run it, against the simulator."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from support.examples_support import EXAMPLES, run_example

from axme_meter.demo._simulator import Simulator


def _code_lines(path: Path) -> list[str]:
    """Lines of code after the module docstring (the docstrings of before/after differ on purpose)."""
    text = path.read_text()
    body = text.split('"""', 2)[2]
    return [line for line in body.splitlines() if line.strip()]


def test_after_differs_from_before_by_exactly_one_line() -> None:
    before, after = _code_lines(EXAMPLES / "before.py"), _code_lines(EXAMPLES / "after.py")
    assert len(before) == len(after)
    changed = [(b, a) for b, a in zip(before, after) if b != a]
    assert changed == [("from openai import OpenAI", "from axme_meter import OpenAI  # the one changed line")]


def test_before_and_after_run_and_after_is_metered(example_env: dict[str, str], simulator: Simulator) -> None:
    assert run_example("before.py", env=example_env).returncode == 0
    script = (
        "import runpy, axme_meter; runpy.run_path(%r, run_name='__main__'); s = axme_meter.spend(); "
        "print('SPEND', s.calls, s.cost_usd, sorted(s.by_agent))" % str(EXAMPLES / "after.py")
    )
    done = subprocess.run([sys.executable, "-c", script], env=example_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    match = re.search(r"SPEND (\d+) ([0-9.]+) \['(.+)'\]", done.stdout)
    assert match, done.stdout
    assert int(match.group(1)) == 2 and float(match.group(2)) > 0


def test_decorator_attributes_calls_to_each_agent(example_env: dict[str, str]) -> None:
    done = run_example("decorator_agent.py", env=example_env)
    assert done.returncode == 0, done.stderr
    assert re.search(r"agent://acme/production/research-agent: 2 calls, \$0\.\d+", done.stdout)
    assert re.search(r"agent://acme/production/writer-agent: 1 calls, \$0\.\d+", done.stdout)


def test_intent_per_ticket(example_env: dict[str, str]) -> None:
    done = run_example("intent_per_ticket.py", env=example_env)
    assert done.returncode == 0, done.stderr
    assert re.search(r"int_t-4711: 2 calls", done.stdout) and re.search(r"int_t-4712: 2 calls", done.stdout)


def test_async_agent(example_env: dict[str, str]) -> None:
    done = run_example("async_agent.py", env=example_env)
    assert done.returncode == 0, done.stderr
    assert re.search(r"4 calls over 4 intents, \$0\.\d+", done.stdout)


def test_streaming_whole_and_stopped_early(example_env: dict[str, str]) -> None:
    done = run_example("streaming.py", env=example_env)
    assert done.returncode == 0, done.stderr
    assert re.search(r"2 streamed calls, \$0\.\d+, 1 estimated", done.stdout)


def test_threads_keep_their_intent(example_env: dict[str, str]) -> None:
    done = run_example("threads.py", env=example_env)
    assert done.returncode == 0, done.stderr
    assert re.search(r"int_t-4711: 4 calls", done.stdout) and re.search(r"int_t-4712: 4 calls", done.stdout)


def test_budget_loop_stops_saves_state_and_exits_non_zero(example_env: dict[str, str], tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    done = run_example("budget_loop.py", "--state", str(state), "--local-limit", "0.02", "--max-rounds", "40", env=example_env)
    assert done.returncode == 3, done.stderr
    assert "budget exceeded, state saved" in done.stderr
    saved = json.loads(state.read_text())
    assert saved["done"] and saved["stopped"]["reason"]
