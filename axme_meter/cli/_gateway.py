"""``axme-meter gateway``: run the self-hosted gateway under uvicorn (needs the ``gateway`` extra)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("gateway", help="run the self-hosted AXME-compatible gateway",
                                   description="Run the gateway (heartbeat ingest, cost policies, enforcement, alerts).")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="port (default 8787)")
    parser.add_argument("--db", default=None, help="database URL: sqlite:///path or postgresql://… (default: a SQLite file in the user data dir)")
    parser.add_argument("--smtp-url", default=None, help="SMTP server for email alerts, e.g. smtp://127.0.0.1:25 (env AXME_GATEWAY_SMTP_URL)")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    parser.add_argument("--proxy-headers", action="store_true",
                        help="behind a reverse proxy: trust its X-Forwarded-Proto/-For (so https is seen as https and the "
                             "dashboard cookie is Secure); only from --forwarded-allow-ips")
    parser.add_argument("--forwarded-allow-ips", default="127.0.0.1", metavar="IPS",
                        help="comma-separated proxy addresses whose X-Forwarded-* headers are trusted with --proxy-headers "
                             "(default 127.0.0.1; '*' trusts any)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..gateway import Settings, create_app
        from ..gateway.dashboard import dashboard_routes
    except ModuleNotFoundError as exc:
        print(f"axme-meter gateway needs the 'gateway' extra ({exc.name} is missing): pip install 'axme_meter[gateway]'", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env(args.db or os.environ.get("AXME_GATEWAY_DB"), smtp_url=args.smtp_url)
        app = create_app(settings, extra_routes=dashboard_routes())  # the web dashboard at /dashboard
    except ValueError as exc:
        print(f"axme-meter gateway: {exc}", file=sys.stderr)
        return 2
    print(f"axme-meter gateway listening on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    # uvicorn trusts X-Forwarded-* from 127.0.0.1 by default; here only when asked to (--proxy-headers)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                timeout_graceful_shutdown=5, proxy_headers=args.proxy_headers, forwarded_allow_ips=args.forwarded_allow_ips)
    return 0
