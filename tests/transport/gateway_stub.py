"""A tiny real HTTP gateway on loopback that speaks the heartbeat protocol and records everything.

Real sockets (not respx) so that the sender thread, subprocesses and fork
children all talk to it the way they would talk to a real gateway. It
de-duplicates entry ids like the real gateway must, and can be told to fail in
the ways that matter: down (503), "recorded but the answer was lost", blocked
agents, exhausted policies, and 429 on intent registration.
"""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
        #: Answer 422 (no per-entry results) to any batch carrying an entry with this intent id.
        self.reject_intent: str | None = None
        #: ``POST /v1/mesh/grants``: None answers 404 (like AXME Cloud, which has no grants); a dict is the 200 body.
        self.grant_answer: dict[str, Any] | None = None
        #: Seconds to wait before answering intent and grant requests (a slow gateway).
        self.slow = 0.0
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
                if stub.reject_intent is not None and any(e.get("intent_id") == stub.reject_intent for e in entries):
                    self._send(422, {"error": {"code": "validation_error", "message": "heartbeats[].intent_id is invalid"}})
                    return
                results = []
                with stub.lock:
                    for entry in entries:
                        if entry["id"] in stub.recorded:
                            stub.duplicates += 1
                            results.append({"id": entry["id"], "status": "duplicate", "error": None})
                        else:
                            stub.recorded[entry["id"]] = entry
                            results.append({"id": entry["id"], "status": "recorded", "error": None})
                if mode == "lose_answer":
                    self._send(503, {"error": {"code": "unavailable", "message": "answer lost"}})
                    return
                agents = sorted({e["agent"] for e in entries})
                answer: dict[str, Any] = {"results": results, "agents": {a: stub._agent_answer(a) for a in agents}}
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
