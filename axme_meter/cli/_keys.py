"""``axme-meter keys create --org ORG [--admin] [--agent ADDR] [--db URL]``: mint an API key (printed once)."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Any

from .._attribution import _SEGMENT as SEGMENT
from ._help import examples


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("keys", help="manage gateway API keys", description="Manage gateway API keys (stored hashed).",
                                   epilog=examples("axme-meter keys create --org myorg", "axme-meter keys create --help"))
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION")
    create = sub.add_parser("create", help="create a key and print it once",
                            description="Create an API key in the gateway's database and print it once (only its hash is "
                            "stored). Clients use it as AXME_API_KEY; the dashboard accepts it at /dashboard/login.",
                            epilog=examples("axme-meter keys create --org myorg              # writes and reads agent://myorg/...",
                                            "axme-meter keys create --org myorg --admin      # may also set policies",
                                            "axme-meter keys create --org myorg --agent agent://myorg/prod/bot --db sqlite:////srv/axme/gateway.sqlite3"))
    create.add_argument("--org", required=True, help="the org the key belongs to ('*' = every org)")
    create.add_argument("--admin", action="store_true", help="may manage policies, agent states and keys")
    create.add_argument("--agent", default=None, help="bind the key to one agent address (for SDKs that send no agent)")
    create.add_argument("--db", default=None, help="database URL (default: the gateway's default SQLite file)")
    create.set_defaults(handler=create_key)
    parser.set_defaults(handler=lambda _args: (parser.print_help(), 2)[1])


def create_key(args: argparse.Namespace) -> int:
    try:
        from .._attribution import validate_address
        from ..gateway import _store
        from ..gateway._auth import new_key
        from ..gateway._config import Settings
        from ..gateway._db import make_engine, migrate
    except ModuleNotFoundError as exc:
        print(f"axme-meter keys needs the 'gateway' extra ({exc.name} is missing): pip install 'axme_meter[gateway]'", file=sys.stderr)
        return 2
    if args.org != "*" and not re.fullmatch(SEGMENT, args.org):
        print(f"axme-meter keys: --org {args.org!r} is not an org name: use letters, digits, '.', '_', '~' and '-', "
              "starting with a letter or digit (it is the first part of agent://ORG/env/name), e.g. --org myorg", file=sys.stderr)
        return 2
    if args.agent is not None:
        try:
            validate_address(args.agent)
        except ValueError as exc:
            print(f"axme-meter keys: {exc}", file=sys.stderr)
            return 2
        if args.org != "*" and _store.org_of(args.agent) != args.org:
            print(f"axme-meter keys: agent {args.agent} is not in org {args.org!r}", file=sys.stderr)
            return 2
    engine = make_engine(Settings.from_env(args.db or os.environ.get("AXME_GATEWAY_DB")).db_url)
    try:
        migrate(engine)
        key = new_key()
        with engine.begin() as conn:
            _store.insert_key(conn, key, args.org, admin=args.admin, agent=args.agent, now=int(time.time()))
    finally:
        engine.dispose()
    print(key)
    return 0
