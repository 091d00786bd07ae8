"""A loopback HTTP proxy in front of a gateway (the stub or a real process) that can fail on purpose.

Modes: ``"ok"`` (forward), ``"down"`` (answer 503 without forwarding: an outage) and
``"lose_answer"`` (forward, so the gateway records the request, then answer 503: the
answer was lost on the way back, and the client must replay under the same ids).
Putting the failure in front of the gateway lets one scenario fail the same way
against the stub and a real gateway process.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


class LossyProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "ok"
        self.forwarded = 0
        #: Paths answered 404 without forwarding: a gateway without that endpoint (AXME Cloud has no grants).
        self.hidden: set[str] = set()
        self._http = httpx.Client(timeout=30.0)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._http.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, raw: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _lost(self) -> None:
                self._answer(503, json.dumps({"error": {"code": "unavailable", "message": "proxy"}}).encode(),
                             {"content-type": "application/json"})

            def _forward(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                mode = proxy.mode
                if self.path.split("?")[0] in proxy.hidden:
                    self._answer(404, json.dumps({"error": {"code": "not_found", "message": "Not Found"}}).encode(),
                                 {"content-type": "application/json"})
                    return
                if mode == "down":
                    self._lost()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                resp = proxy._http.request(method, proxy.upstream + self.path, content=body, headers=headers)
                proxy.forwarded += 1
                if mode == "lose_answer":
                    self._lost()
                    return
                self._answer(resp.status_code, resp.content, dict(resp.headers))

            def do_POST(self) -> None:  # noqa: N802
                self._forward("POST")

            def do_GET(self) -> None:  # noqa: N802
                self._forward("GET")

        return Handler
