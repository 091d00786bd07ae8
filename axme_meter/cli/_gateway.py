"""``axme-meter gateway``: run the self-hosted gateway under uvicorn (needs the ``gateway`` extra).

Start-up order matters for what the user is told: the database URL is checked,
the port is bound, the database is opened and migrated, and only then does the
gateway say it is listening. Each failure is one line naming the fix (a port in
use, a SQLite directory that does not exist, an unsupported database).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import socket
import sys
from typing import Any

from . import _dburl
from ._help import examples


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gateway", help="run the self-hosted AXME-compatible gateway",
        description="Run the gateway: heartbeat ingest, cost policies, enforcement (HTTP 429), alerts and the "
        "dashboard at /dashboard. On first start it prints an admin key; it always prints its database.",
        epilog=examples("axme-meter gateway                       # SQLite in the per-user data dir, 127.0.0.1:8787",
                        "axme-meter gateway --port 9000 --db sqlite:///$HOME/axme/gateway.sqlite3",
                        "axme-meter gateway --host 0.0.0.0 --db postgresql://axme@db.internal/axme   # one of several replicas"),
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8787, help="port (default 8787)")
    parser.add_argument("--db", default=None, help="database URL: sqlite:///path or postgresql://… (default: a SQLite file in the user data dir)")
    parser.add_argument("--smtp-url", default=None, help="SMTP server for email alerts, e.g. smtp://127.0.0.1:25 (env AXME_GATEWAY_SMTP_URL)")
    parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug", "trace"],
                        help="uvicorn log level (default warning)")
    parser.add_argument("--proxy-headers", action="store_true",
                        help="behind a reverse proxy: trust its X-Forwarded-Proto/-For (so https is seen as https and the "
                             "dashboard cookie is Secure); only from --forwarded-allow-ips")
    parser.add_argument("--forwarded-allow-ips", default="127.0.0.1", metavar="IPS",
                        help="comma-separated proxy addresses whose X-Forwarded-* headers are trusted with --proxy-headers "
                             "(default 127.0.0.1; '*' trusts any)")
    parser.set_defaults(handler=run)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535 (0 picks a free one), got {port}")
    return port


def _fail(message: str, code: int = 1) -> int:
    print(f"axme-meter gateway: {message}", file=sys.stderr)
    return code


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, so a port in use is known before anything is announced (raises ``OSError``)."""
    family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart may reuse a port in TIME_WAIT
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def bind_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (f"cannot listen on {host}:{port}: address already in use (another gateway?); stop that process "
                f"or pick another port, e.g. --port {port + 1 if port < 65535 else 8788}")
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on {host}:{port}; use a port above 1023, e.g. --port 8787"
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host!r}: not an address of this machine; use 127.0.0.1 or 0.0.0.0"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..gateway import Settings, create_app
        from ..gateway.dashboard import dashboard_routes
    except ModuleNotFoundError as exc:
        return _fail(f"needs the 'gateway' extra ({exc.name} is missing): pip install 'axme_meter[gateway]'")
    try:
        settings = Settings.from_env(args.db or os.environ.get("AXME_GATEWAY_DB"), smtp_url=args.smtp_url)
    except ValueError as exc:  # a bad AXME_GATEWAY_* setting: a usage error
        return _fail(str(exc), 2)
    problem = _dburl.check(settings.db_url)
    if problem:
        return _fail(problem)
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        return _fail(bind_error(args.host, args.port, exc))
    if not os.environ.get("AXME_GATEWAY_PUBLIC_URL"):  # approval links point at where we listen unless told otherwise
        listen = f"[{args.host}]" if ":" in args.host else args.host
        settings = dataclasses.replace(settings, public_url=f"http://{listen}:{sock.getsockname()[1]}")
    try:
        try:
            app = create_app(settings, extra_routes=dashboard_routes())  # the web dashboard at /dashboard
        except ValueError as exc:  # a bad setting found while wiring (e.g. AXME_GATEWAY_WEBHOOK_ALLOW)
            return _fail(str(exc), 2)
        print(f"axme-meter gateway: database {_dburl.describe(settings.db_url)}", file=sys.stderr, flush=True)
        port = sock.getsockname()[1]
        shown = f"[{args.host}]" if ":" in args.host else args.host
        print(f"axme-meter gateway listening on http://{shown}:{port} (dashboard: http://{shown}:{port}/dashboard)",
              file=sys.stderr, flush=True)
        # uvicorn trusts X-Forwarded-* from 127.0.0.1 by default; here only when asked to (--proxy-headers)
        config = uvicorn.Config(app, log_level=args.log_level, access_log=False, timeout_graceful_shutdown=5,
                                proxy_headers=args.proxy_headers, forwarded_allow_ips=args.forwarded_allow_ips)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0
