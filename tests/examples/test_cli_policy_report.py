"""``axme-meter policy`` and ``report``: request shapes and error messages, against a recording loopback server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from axme_meter.cli import main


class Recorder:
    """A loopback HTTP server that records requests and answers from a script keyed by (method, path)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path = self.path.split("?")[0]
                recorder.requests.append({"method": self.command, "path": self.path, "body": body,
                                          "key": self.headers.get("x-api-key")})
                status, answer = recorder.answers.get((self.command, path), (404, {"error": {"code": "not_found", "message": "no such thing"}}))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.close()


AGENT = "agent://acme/production/research-agent"
ENCODED = "/v1/mesh/agents/agent%3A%2F%2Facme%2Fproduction%2Fresearch-agent/policies/cost"


def test_policy_set_sends_the_fields_given(server: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    server.answers[("PUT", ENCODED)] = (200, {"max_cost_per_day_usd": "50", "action_on_breach": "block"})
    code = main(["policy", "set", AGENT, "--max-cost-per-day", "50", "--action", "block", "--max-intents-per-hour", "100",
                 "--timezone", "Europe/Berlin", "--alert-thresholds", "0.5,0.9", "--notify-email", "ops@acme.test",
                 "--gateway", server.url, "--api-key", "admin-key"])
    assert code == 0
    [request] = server.requests
    assert request["method"] == "PUT" and request["path"] == ENCODED and request["key"] == "admin-key"
    assert request["body"] == {"max_cost_per_day_usd": "50", "action_on_breach": "block", "max_intents_per_hour": 100,
                               "timezone": "Europe/Berlin", "alert_thresholds": [0.5, 0.9],
                               "notify": {"email": ["ops@acme.test"]}}
    assert "max_cost_per_day_usd" in capsys.readouterr().out


def test_policy_get_uses_env_and_prints_json(server: Recorder, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AXME_GATEWAY_URL", server.url)
    monkeypatch.setenv("AXME_API_KEY", "env-key")
    server.answers[("GET", ENCODED)] = (200, {"max_cost_per_day_usd": "50"})
    assert main(["policy", "get", AGENT, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"max_cost_per_day_usd": "50"}
    assert server.requests[0]["key"] == "env-key"


def test_address_ids_pass_through(server: Recorder) -> None:
    server.answers[("GET", "/v1/mesh/agents/addr_123/policies/cost")] = (200, {})
    assert main(["policy", "get", "addr_123", "--gateway", server.url, "--api-key", "k"]) == 0


def test_gateway_errors_are_one_clear_line(server: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    server.answers[("PUT", ENCODED)] = (422, {"error": {"code": "validation_error", "message": "max_cost_per_day_usd: must be >= 0"}})
    assert main(["policy", "set", AGENT, "--max-cost-per-day", "5", "--gateway", server.url, "--api-key", "k"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 422 validation_error: max_cost_per_day_usd: must be >= 0" in err and "Traceback" not in err
    server.answers[("GET", ENCODED)] = (403, {"error": {"code": "forbidden", "message": "admin key required"}})
    assert main(["policy", "get", AGENT, "--gateway", server.url, "--api-key", "k"]) == 1
    assert "policies need an admin key" in capsys.readouterr().err


def test_missing_settings_and_unreachable_gateway(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("AXME_GATEWAY_URL", raising=False)
    monkeypatch.delenv("AXME_API_KEY", raising=False)
    assert main(["policy", "get", AGENT]) == 1
    assert "AXME_GATEWAY_URL" in capsys.readouterr().err
    assert main(["report", "--gateway", "http://127.0.0.1:9", "--api-key", "k"]) == 1
    assert "cannot reach the gateway at http://127.0.0.1:9" in capsys.readouterr().err
    assert main(["policy", "set", AGENT, "--gateway", "http://127.0.0.1:9", "--api-key", "k"]) == 2
    assert "set at least one limit: --max-cost-per-hour" in capsys.readouterr().err


def test_bad_values_are_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["policy", "set", AGENT, "--max-cost-per-day", "lots"])
    assert exit_info.value.code == 2 and "not an amount in USD" in capsys.readouterr().err


def test_report_tables_per_agent_and_intent(server: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    server.answers[("GET", "/v1/mesh/agents")] = (200, {"ok": True, "agents": [
        {"address_id": "addr_1", "address": AGENT, "health_status": "healthy", "cost_period": "12.5", "intents_period": 3},
        {"address_id": "addr_2", "address": "agent://acme/production/triage", "health_status": "degraded", "cost_period": "0.25"},
    ], "summary": {}})
    server.answers[("GET", "/v1/mesh/agents/addr_1/costs")] = (200, {"by_intent": [
        {"intent_id": "int_t-4711", "cost_usd": "10.0", "llm_calls": 40}, {"intent_id": "int_t-4712", "cost_usd": "2.5", "llm_calls": 9}]})
    server.answers[("GET", "/v1/mesh/agents/addr_2/costs")] = (200, {"by_intent": {"int_x": {"cost_usd": "0.25", "llm_calls": 1}}})
    assert main(["report", "--window", "week", "--gateway", server.url, "--api-key", "k"]) == 0
    out = capsys.readouterr().out
    assert "cost per agent (week)" in out and "$12.75" in out
    assert "int_t-4711" in out and "$10.00" in out and "int_x" in out
    assert all("window=week" in r["path"] for r in server.requests)


def test_report_shows_small_amounts_in_significant_digits(server: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    server.answers[("GET", "/v1/mesh/agents")] = (200, {"ok": True, "agents": [
        {"address_id": "addr_1", "address": AGENT, "cost_period": "0.0000525", "intents_period": 1}]})
    server.answers[("GET", "/v1/mesh/agents/addr_1/costs")] = (200, {"by_intent": [{"intent_id": "int_a", "cost_usd": "0.004623"}]})
    assert main(["report", "--gateway", server.url, "--api-key", "k"]) == 0
    out = capsys.readouterr().out
    assert "$0.0000525" in out and "$0.00462" in out and "$0.0000 " not in out
