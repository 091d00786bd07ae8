"""A tiny real HTTP gateway on loopback that speaks the heartbeat protocol and records everything.

Real sockets (not respx) so that the sender thread, subprocesses and fork
children all talk to it the way they would talk to a real gateway. It answers
batches per entry like the real gateway (``recorded`` / ``duplicate`` /
``conflict`` for the same id with other content / ``error`` with a code for an
entry over the per-call limit or for an agent the key may not write), and can be
told to fail in the ways that matter: down (503), "recorded but the answer was
lost", blocked agents, exhausted policies, 429 on intent registration, unknown
keys (401), and ``legacy`` mode, where a bad entry refuses the whole batch (422 /
403) as gateways before per-entry outcomes did. ``tests/transport/test_shared_scenario.py``
runs one delivery scenario against this stub and a real gateway, so they cannot drift.
"""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from axme_meter._protocol import MAX_CALL_USD, entry_result


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (flush timeout, process killed) is normal here, not a test failure."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class StubGateway:
    def __init__(self, *, keep_requests: bool = True) -> None:
        self.lock = threading.Lock()
        self.keep_requests = keep_requests  # False: count only (the memory benchmark must not trace the stub)
        self.request_count = 0
        self.requests: list[dict[str, Any]] = []  # every heartbeat request: {"headers", "body"}
        self.recorded: dict[str, dict[str, Any]] = {}  # id -> entry, first time seen
        self.duplicates = 0
        self.intents: list[dict[str, Any]] = []
        #: "ok" | "down" (503, nothing recorded) | "lose_answer" (recorded, then 503)
        self.mode = "ok"
        self.agent_states: dict[str, dict[str, Any]] = {}
        self.budgets: dict[str, Decimal] = {}
        self.intent_status = 201
        self.intent_error: dict[str, Any] | None = None
        self.heartbeat_status_override: int | None = None
        #: Refuse entries with this intent id as invalid (per entry; in ``legacy`` mode the whole batch, 422).
        self.reject_intent: str | None = None
        #: ``POST /v1/mesh/grants``: None answers 404 (like AXME Cloud, which has no grants); a dict is the 200 body.
        self.grant_answer: dict[str, Any] | None = None
        #: Seconds to wait before answering intent and grant requests (a slow gateway).
        self.slow = 0.0
        #: key -> org it may write ("*" for all); empty: any key may write anything. Unknown keys get 401.
        self.keys: dict[str, str] = {}
        #: Refuse the whole batch for one bad entry (no per-entry results), like gateways before per-entry outcomes.
        self.legacy = False
        #: Every ``blocks`` item the client reported, in order.
        self.blocks: list[dict[str, Any]] = []
        #: False: refuse a batch carrying ``blocks`` with 422, as gateways before client block reports did.
        self.accepts_blocks = True
        #: Announced in heartbeat answers (as gateways with a price table do); ``None``: not announced.
        self.pricing_version: str | None = None
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ views

    def real_entries(self) -> list[dict[str, Any]]:
        """Recorded entries that carry spend (probes for blocked agents have zero calls)."""
        with self.lock:
            return [e for e in self.recorded.values() if e["metrics"]["llm_calls"]]

    def total_cost(self, agent: str | None = None) -> Decimal:
        return sum((Decimal(e["metrics"]["cost_usd"]) for e in self.real_entries() if agent in (None, e["agent"])), Decimal(0))

    def total_calls(self) -> int:
        return sum(e["metrics"]["llm_calls"] for e in self.real_entries())

    def heartbeat_requests(self) -> int:
        with self.lock:
            return self.request_count

    # ------------------------------------------------------------------ control

    def block(self, agent: str, *, state: str = "active", remaining: str = "0", limit: str = "1.00", spent: str = "1.00",
              resets_at: str = "2099-01-01T00:00:00Z") -> None:
        self.agent_states[agent] = {"state": state, "policies": [
            {"name": "max_cost_per_day_usd", "limit": limit, "spent": spent, "remaining": remaining, "resets_at": resets_at}]}

    def set_budget(self, agent: str, limit: str) -> None:
        """A live day budget: every answer reports ``remaining = limit - recorded spend`` (like the real gateway)."""
        self.budgets[agent] = Decimal(limit)

    def _agent_answer(self, agent: str) -> dict[str, Any]:
        if agent in self.budgets:
            limit = self.budgets[agent]
            spent = sum((Decimal(e["metrics"]["cost_usd"]) for e in self.recorded.values() if e["agent"] == agent), Decimal(0))
            return {"address_id": "addr_x", "state": "active", "policies": [{
                "name": "max_cost_per_day_usd", "limit": str(limit), "spent": str(spent),
                "remaining": str(limit - spent), "resets_at": "2099-01-01T00:00:00Z"}]}
        state = self.agent_states.get(agent)
        if state is None:
            return {"address_id": "addr_" + agent[-6:], "state": "active", "policies": []}
        return {"address_id": "addr_" + agent[-6:], **state}

    def _refusal(self, entry: dict[str, Any], key: str | None) -> tuple[str, str] | None:
        """Why the real gateway would refuse this entry on its own: ``(code, message)``, or ``None``."""
        org = self.keys.get(key or "") if self.keys else "*"
        if org != "*" and entry["agent"].split("/")[2] != org:
            return "forbidden", f"this key may not write heartbeats for {entry['agent']}"
        metrics = entry.get("metrics") or {}
        if Decimal(str(metrics.get("cost_usd", 0))) > MAX_CALL_USD * max(int(metrics.get("llm_calls", 0)), 1):
            return "validation_error", "metrics.cost_usd: more than 10000 USD per call"
        if self.reject_intent is not None and entry.get("intent_id") == self.reject_intent:
            return "validation_error", "heartbeats[].intent_id is invalid"
        return None

    def _blocked(self, agent: str) -> bool:
        answer = self._agent_answer(agent)
        return answer["state"] != "active" or any(Decimal(p["remaining"]) <= 0 for p in answer["policies"])

    # ------------------------------------------------------------------ HTTP

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                if stub.keys and self.headers.get("x-api-key") not in stub.keys:
                    with stub.lock:
                        stub.request_count += self.path == "/v1/mesh/heartbeat"
                    self._send(401, {"error": {"code": "unauthorized", "message": "invalid API key"}})
                    return
                if self.path in ("/v1/mesh/intents", "/v1/mesh/grants") and stub.slow:
                    time.sleep(stub.slow)
                if self.path == "/v1/mesh/heartbeat":
                    self._heartbeat(body)
                elif self.path == "/v1/mesh/grants" and stub.grant_answer is not None:
                    self._send(200, {**stub.grant_answer, "agent": body.get("agent")})
                elif self.path == "/v1/mesh/intents":
                    with stub.lock:
                        stub.intents.append(body)
                    if stub.intent_status >= 400:
                        self._send(stub.intent_status, stub.intent_error or {"error": {"code": "budget_exceeded", "message": "over budget"}},
                                   {"retry-after": "3600", "x-should-retry": "false"})
                    else:
                        self._send(stub.intent_status, {"intent_id": body.get("intent_id")})
                else:
                    self._send(404, {"error": {"code": "not_found", "message": self.path}})

            def _heartbeat(self, body: Any) -> None:
                entries = body["heartbeats"] if isinstance(body, dict) and "heartbeats" in body else [body]
                with stub.lock:
                    stub.request_count += 1
                    if stub.keep_requests:
                        stub.requests.append({"headers": dict(self.headers), "body": body})
                    mode = stub.mode
                if mode == "down":
                    self._send(503, {"error": {"code": "unavailable", "message": "down"}})
                    return
                if isinstance(body, dict) and isinstance(body.get("blocks"), list):
                    if not stub.accepts_blocks:
                        self._send(422, {"error": {"code": "validation_error", "message": "blocks: Extra inputs are not "
                                                   "permitted", "details": {"field": "blocks"}}})
                        return
                    with stub.lock:
                        stub.blocks.extend(body["blocks"])
                refusals = [stub._refusal(e, self.headers.get("x-api-key")) for e in entries]
                if stub.legacy and any(refusals):
                    code, message = next(r for r in refusals if r)
                    self._send(403 if code == "forbidden" else 422, {"error": {"code": code, "message": message}})
                    return
                results = []
                with stub.lock:
                    for entry, refused in zip(entries, refusals):
                        if refused:
                            results.append(entry_result(entry["id"], "error", *refused))
                        elif entry["id"] in stub.recorded:
                            same = _content(stub.recorded[entry["id"]]) == _content(entry)
                            stub.duplicates += same
                            results.append(entry_result(entry["id"], "duplicate") if same else
                                           entry_result(entry["id"], "conflict", "conflict", "recorded with other content"))
                        else:
                            stub.recorded[entry["id"]] = entry
                            results.append(entry_result(entry["id"], "recorded"))
                if mode == "lose_answer":
                    self._send(503, {"error": {"code": "unavailable", "message": "answer lost"}})
                    return
                agents = sorted({e["agent"] for e, r in zip(entries, refusals) if not r})
                answer: dict[str, Any] = {"results": results, "agents": {a: stub._agent_answer(a) for a in agents}}
                if stub.pricing_version is not None:
                    answer["pricing_version"] = stub.pricing_version
                status = 200
                if agents and all(stub._blocked(a) for a in agents):
                    status = 429
                    pol = answer["agents"][agents[0]]["policies"]
                    p = pol[0] if pol else {"name": None, "limit": None, "spent": None, "resets_at": None}
                    answer["error"] = {"code": "budget_exceeded", "message": f"{agents[0]} is over {p['name']}",
                                       "agent": agents[0], "policy": p["name"], "limit": p["limit"], "spent": p["spent"],
                                       "resets_at": p["resets_at"]}
                if stub.heartbeat_status_override is not None:
                    status = stub.heartbeat_status_override
                self._send(status, answer)

        return Handler


def _content(entry: dict[str, Any]) -> str:
    """What an entry id stands for (as the real gateway's digest): agent, intent and amounts."""
    return json.dumps([entry.get("agent"), entry.get("intent_id"), entry.get("metrics"), entry.get("by_model")], sort_keys=True)
