"""Real alert receivers for tests: an aiosmtpd SMTP server and a small threaded HTTP server."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from support.gateway_process import free_port


class SMTPReceiver:
    """``with SMTPReceiver() as smtp:`` — ``smtp.url`` for the gateway, ``smtp.messages`` received."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd hook
        msg = message_from_bytes(envelope.content)
        with self._lock:
            decoded = msg.get_payload(decode=True) if not msg.is_multipart() else None
            text = decoded.decode(msg.get_content_charset() or "utf-8") if isinstance(decoded, bytes) else ""
            self.messages.append({"to": list(envelope.rcpt_tos), "subject": msg["Subject"], "body": msg.get_payload(),
                                  "text": text})  # ``text``: the body with its transfer encoding undone
        return "250 OK"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> SMTPReceiver:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


class HTTPReceiver:
    """Records JSON POSTs per path; paths listed in ``failing`` answer 500. Every answer carries ``answer`` as its body
    (tests put a marker there to prove it never reaches the gateway's events)."""

    def __init__(self, failing: tuple[str, ...] = (), answer: bytes = b"") -> None:
        self.requests: list[tuple[str, Any]] = []
        received = self.requests
        failing_paths = failing

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                received.append((self.path, json.loads(body or b"null")))
                self.send_response(500 if self.path in failing_paths else 200)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def posts(self, path: str) -> list[Any]:
        return [body for p, body in list(self.requests) if p == path]

    def __enter__(self) -> HTTPReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class HangingReceiver:
    """A webhook target that is up but never answers: each POST is read, recorded, and then held open
    until the test ends (or ``release()``), like a receiver whose backend died behind its load balancer."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.released = threading.Event()
        self.count = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.count += 1
                receiver.arrived.set()
                receiver.released.wait(120)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def release(self) -> None:
        self.released.set()

    def __enter__(self) -> HangingReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


class TLSReceiver:
    """An HTTPS webhook receiver with a self-signed certificate for ``localhost`` (made with the ``openssl`` binary).

    ``cafile`` is that certificate: give it to the gateway as ``SSL_CERT_FILE`` so verification can succeed only if
    the gateway checks the certificate against the host name. ``seen`` records (Host header, TLS server name)."""

    def __init__(self, workdir: Path) -> None:
        self.cafile = workdir / "localhost.pem"
        key = workdir / "localhost.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(self.cafile),
                        "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                       check=True, capture_output=True)
        self.seen: list[tuple[str, str | None]] = []
        names: list[str | None] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length", "0")))
                seen.append((str(self.headers.get("host")), names[-1] if names else None))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cafile), str(key))
        context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,misc]
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> TLSReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
