"""``axme-meter policy`` against a real gateway: the client refuses exactly what the gateway refuses,
``update`` changes only what it is given, ``--json`` shows each field once, and ``report`` never cuts
an address. Both client-side checkers are run: the gateway's own pydantic model (gateway extra
installed) and the written-out checks used without it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from axme_meter.cli import build_parser, main
from axme_meter.cli._policy import build_policy
from support.gateway_process import GatewayProcess, running_gateway

AGENT = "agent://acme/production/checked-agent"
#: (extra flags, the flag the message must name, words it must contain)
REFUSED = [
    (["--max-cost-per-day", "0"], "--max-cost-per-day", "must be greater than zero"),
    (["--max-cost-per-day", "-1"], "--max-cost-per-day", "must not be negative"),
    (["--max-cost-per-hour", "2000000000"], "--max-cost-per-hour", "at most 1000000000 USD"),
    (["--max-cost-per-month", "NaN"], "--max-cost-per-month", "finite"),
    (["--max-intents-per-day", "0"], "--max-intents-per-day", "1"),
    (["--max-cost-per-day", "5", "--timezone", "Mars/Olympus_Mons"], "--timezone", "Europe/Berlin"),
    (["--max-cost-per-day", "5", "--alert-thresholds", "0.5,1.5"], "--alert-thresholds", "1"),
    (["--action", "pause"], "--max-cost-per-day", "set at least one limit"),
    (["--max-cost-per-day", "5", "--unpriced-input-per-1m", "0"], "--unpriced-input-per-1m", "must be greater than zero"),
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path_factory.mktemp("cli-policy-gw")) as gateway:
        yield gateway


@pytest.fixture(params=["gateway-model", "written-out"])
def checker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each test with the pydantic model, and as an install without the gateway extra would."""
    if request.param == "written-out":
        monkeypatch.setitem(sys.modules, "axme_meter.gateway._schemas", None)  # import fails like a missing extra
    return str(request.param)


def _policy_path(agent: str) -> str:
    return f"/v1/mesh/agents/{quote(agent, safe='')}/policies/cost"


def _run(capsys: pytest.CaptureFixture[str], gw: GatewayProcess, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--gateway", gw.url, "--api-key", gw.admin_key])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("flags", "flag", "words"), REFUSED, ids=[" ".join(c[0]) for c in REFUSED])
def test_the_client_refuses_what_the_gateway_refuses(gw: GatewayProcess, capsys: pytest.CaptureFixture[str], checker: str,
                                                     flags: list[str], flag: str, words: str) -> None:
    body = build_policy(build_parser().parse_args(["policy", "set", AGENT, *flags]))
    with gw.client() as http:
        assert http.put(_policy_path(AGENT), json=body).status_code == 422  # the server's verdict on the same body
    code, out, err = _run(capsys, gw, "policy", "set", AGENT, *flags)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("axme-meter policy set: ")
    assert flag in err and words in err and "Traceback" not in err
    with gw.client() as http:
        assert http.get(_policy_path(AGENT)).status_code == 404  # nothing was sent


def test_bad_email_and_webhook_say_what_a_valid_value_looks_like(capsys: pytest.CaptureFixture[str]) -> None:
    for flags, hint in ((["--notify-email", "ops-at-example.com"], "an email address such as ops@example.com"),
                        (["--notify-webhook", "hooks.example.com/x"], "an http:// or https:// URL such as https://"),
                        (["--notify-slack", "ftp://hooks.slack.com"], "an http:// or https:// URL such as https://")):
        with pytest.raises(SystemExit) as exit_info:
            main(["policy", "set", AGENT, "--max-cost-per-day", "5", *flags])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and hint in err and "pattern" not in err and "^" not in err
        assert len(err.strip().splitlines()) == 1 and flags[0] in err


def test_set_replaces_update_changes_only_what_is_given(gw: GatewayProcess, capsys: pytest.CaptureFixture[str], checker: str) -> None:
    agent = f"agent://acme/production/updated-{checker}"
    code, _, err = _run(capsys, gw, "policy", "set", agent, "--max-cost-per-day", "50", "--max-cost-per-hour", "5",
                        "--action", "pause", "--timezone", "Europe/Berlin", "--notify-email", "ops@example.com",
                        "--on-unpriced-call", "refuse")
    assert code == 0, err
    code, _, err = _run(capsys, gw, "policy", "update", agent, "--max-cost-per-day", "75", "--notify-webhook", "https://hooks.example.com/a")
    assert code == 0, err
    with gw.client() as http:
        stored = http.get(_policy_path(agent)).json()["policy"]
    assert stored["max_cost_per_day_usd"] == "75.00" and stored["max_cost_per_hour_usd"] == "5.00"
    assert stored["action_on_breach"] == "pause" and stored["timezone"] == "Europe/Berlin"
    assert stored["on_unpriced_call"] == "refuse"
    assert stored["notify"] == {"email": ["ops@example.com"], "slack_webhook": None, "webhook": "https://hooks.example.com/a"}
    code, _, err = _run(capsys, gw, "policy", "update", agent, "--unset", "max-cost-per-hour", "--unset", "notify-email")
    assert code == 0, err
    with gw.client() as http:
        stored = http.get(_policy_path(agent)).json()["policy"]
    assert stored["max_cost_per_hour_usd"] is None and stored["notify"]["email"] == [] and stored["max_cost_per_day_usd"] == "75.00"
    code, _, err = _run(capsys, gw, "policy", "update", agent, "--unset", "max-cost-per-day")  # would leave no limit
    assert code == 2 and "set at least one limit" in err
    code, _, err = _run(capsys, gw, "policy", "set", agent, "--max-cost-per-month", "900")  # set replaces everything
    assert code == 0, err
    with gw.client() as http:
        stored = http.get(_policy_path(agent)).json()["policy"]
    assert stored["max_cost_per_day_usd"] is None and stored["action_on_breach"] == "block" and stored["timezone"] == "UTC"


def test_update_without_a_policy_says_to_use_set(gw: GatewayProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, gw, "policy", "update", "agent://acme/production/never-set", "--max-cost-per-day", "5")
    assert code == 1 and "has no cost policy to update" in err and "axme-meter policy set" in err


def test_set_and_update_help_say_which_replaces(capsys: pytest.CaptureFixture[str]) -> None:
    for action, words in (("set", "replace the whole cost policy"), ("update", "keep all others")):
        with pytest.raises(SystemExit):
            main(["policy", action, "--help"])
        assert words in " ".join(capsys.readouterr().out.split()).lower()


def test_policy_get_json_prints_each_field_once(gw: GatewayProcess, capsys: pytest.CaptureFixture[str]) -> None:
    agent = "agent://acme/production/json-agent"
    assert _run(capsys, gw, "policy", "set", agent, "--max-cost-per-day", "5")[0] == 0
    code, out, _ = _run(capsys, gw, "policy", "get", agent, "--json")
    assert code == 0
    policy = json.loads(out)
    assert policy["max_cost_per_day_usd"] == "5.00" and "policy" not in policy
    for key in policy:
        assert out.count(f'"{key}"') == 1, key
    code, out, _ = _run(capsys, gw, "policy", "get", agent)
    assert code == 0 and out.count("max_cost_per_day_usd") == 1


def _lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


def test_report_wraps_long_addresses_and_wide_keeps_rows_whole(gw: GatewayProcess, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    agent = "agent://acme-research-division/production-eu-west-1/ticket-deduplication-research-agent"
    with gw.client() as http:
        sent = http.post("/v1/mesh/heartbeat", json={"heartbeats": [{
            "id": "hb_report_1", "agent": agent, "intent_id": "ticket-4711-reprocess-customer-escalation-queue",
            "metrics": {"cost_usd": "0.0123", "llm_calls": 3}}]})
        assert sent.status_code == 200, sent.text
    code, out, _ = _run(capsys, gw, "report", "--agent", agent)
    assert code == 0 and "…" not in out  # nothing cut
    assert all(len(line) <= 80 for line in _lines(out))
    folded = "".join(line.split("│")[1].strip() for line in _lines(out) if line.count("│") >= 5)
    assert agent in folded  # every character of the address is there, folded within its column
    code, out, _ = _run(capsys, gw, "report", "--agent", agent, "--wide")
    assert code == 0 and "…" not in out
    assert any(agent in line and "$0.0123" in line for line in _lines(out))  # one line per row
    assert any("ticket-4711-reprocess-customer-escalation-queue" in line for line in _lines(out))


def _help_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_every_subcommand_help_has_a_description_and_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    from axme_meter.cli._help import subparsers_of

    parsers = subparsers_of(build_parser())
    names = {p.prog.removeprefix("axme-meter ") for p in parsers}
    assert {"demo", "simulate", "price", "prices", "gateway", "keys", "keys create", "policy", "policy set",
            "policy update", "policy get", "policy delete", "report", "approvals", "approvals list", "approvals approve",
            "approvals deny"} <= names
    for parser in parsers:
        text = _help_of(parser.prog.split()[1:], capsys)
        assert parser.description and len(parser.description) > 30, parser.prog
        examples = text.split("examples:\n", 1)
        assert len(examples) == 2 and f"  {parser.prog.split()[0]} {parser.prog.split()[1]}" in examples[1], parser.prog


def test_the_simulator_is_a_documented_command(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help_of(["simulate"], capsys)
    assert "axme-meter simulate --port 8700" in text and "OPENAI_BASE_URL" in text
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "axme-meter simulate --port" in readme
