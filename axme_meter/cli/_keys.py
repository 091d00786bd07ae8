"""``axme-meter keys create|list|revoke``: manage gateway API keys.

Each action works on the database directly (``--db URL``, else ``AXME_GATEWAY_DB``,
else the gateway's default SQLite file), or, with ``--gateway URL``, through a running
gateway's ``/v1/keys`` endpoints with an admin key (``--api-key`` / ``AXME_API_KEY``),
whose scope then limits what it may create, see and revoke. Both go through
``gateway._commands``, so both write the ``key.created`` / ``key.revoked`` audit events
(``"by": "cli"`` for direct database access).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from datetime import datetime, timezone
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
    _target_flags(create)
    create.set_defaults(handler=create_key)
    listing = sub.add_parser("list", help="list keys by prefix (keys are stored hashed: never shown again)",
                             description="List the gateway's API keys: prefix, org, admin flag, bound agent and creation "
                             "time. Keys are stored hashed, so a key itself is never shown again.",
                             epilog=examples("axme-meter keys list", "axme-meter keys list --json",
                                             "axme-meter keys list --gateway http://127.0.0.1:8787   # with AXME_API_KEY"))
    listing.add_argument("--json", action="store_true", help="print the JSON answer instead of a table")
    _target_flags(listing)
    listing.set_defaults(handler=list_keys)
    revoke = sub.add_parser("revoke", help="revoke a key: every replica refuses it within a second",
                            description="Revoke an API key by its prefix (as 'keys list' shows it). Every gateway replica "
                            "refuses it within a second, and dashboard sessions logged in with it end at once.",
                            epilog=examples("axme-meter keys revoke axme_sa_AbCdEf012345",
                                            "axme-meter keys revoke axme_sa_AbCdEf012345 --gateway http://127.0.0.1:8787"))
    revoke.add_argument("prefix", metavar="PREFIX", help="the key's prefix as 'keys list' shows it (with --db: or the whole key)")
    _target_flags(revoke)
    revoke.set_defaults(handler=revoke_key)
    parser.set_defaults(handler=lambda _args: (parser.print_help(), 2)[1])


def _target_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="database URL (default: $AXME_GATEWAY_DB, else the gateway's default SQLite file)")
    parser.add_argument("--gateway", metavar="URL", default=None,
                        help="use a running gateway's /v1/keys instead of the database (needs an admin key)")
    parser.add_argument("--api-key", metavar="KEY", default=None, help="admin key for --gateway (default: $AXME_API_KEY)")


def _fail(message: str, code: int = 1) -> int:
    print(f"axme-meter keys: {message}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace, over_http: Callable[[Any], Any], in_db: Callable[[Any, Any, Any], Any],
         fail: Callable[..., int] | None = None) -> tuple[Any, int]:
    """Call the gateway (``--gateway``) or the database; returns (answer, 0) or (None, exit code) after printing why.

    Shared with ``approvals`` (``fail`` prints its errors under its own name)."""
    _fail = fail or globals()["_fail"]
    if args.gateway and args.db:
        return None, _fail("pass either --db or --gateway, not both", 2)
    if args.gateway:
        from ._policy import GatewayAPI, GatewayError

        try:
            with GatewayAPI(args.gateway, args.api_key) as api:
                return over_http(api), 0
        except GatewayError as exc:
            return None, _fail(str(exc))
    try:
        from ..gateway._auth import Principal
        from ..gateway._config import Settings
        from ..gateway._db import make_engine, migrate
        from ..gateway._errors import ApiError
    except ModuleNotFoundError as exc:
        return None, _fail(f"needs the 'gateway' extra ({exc.name} is missing): pip install 'axme_meter[gateway]'", 2)
    from ..gateway._windows import Clock

    settings = Settings.from_env(args.db or os.environ.get("AXME_GATEWAY_DB"))
    engine = make_engine(settings.db_url)
    try:
        migrate(engine)
        # the gateway's own clock setting (AXME_GATEWAY_CLOCK_FILE, for tests and demos), else the real time
        now = Clock(settings.clock_file).now() if settings.clock_file else datetime.now(timezone.utc)
        return in_db(engine, Principal("*", True, None, "cli"), now), 0
    except ApiError as exc:
        return None, _fail(exc.message)
    finally:
        engine.dispose()


def create_key(args: argparse.Namespace) -> int:
    from .._attribution import validate_address

    if args.org != "*" and not re.fullmatch(SEGMENT, args.org):
        return _fail(f"--org {args.org!r} is not an org name: use letters, digits, '.', '_', '~' and '-', starting with "
                     "a letter or digit (it is the first part of agent://ORG/env/name), e.g. --org myorg", 2)
    if args.agent is not None:
        try:
            address = validate_address(args.agent)
        except ValueError as exc:
            return _fail(str(exc), 2)
        if args.org != "*" and address.split("://", 1)[1].split("/", 1)[0] != args.org:
            return _fail(f"agent {args.agent} is not in org {args.org!r}", 2)
    body = {"org": args.org, "admin": args.admin, "agent": args.agent}
    answer, code = _run(args, lambda api: api.request("POST", "/v1/keys", json=body),
                        lambda engine, who, now: _commands().create_key(engine, who, args.org, admin=args.admin,
                                                                        agent=args.agent, now=now))
    if code:
        return code
    print(answer["key"])
    return 0


def _commands() -> Any:
    """Imported only for database access, so ``--gateway`` works without the 'gateway' extra."""
    from ..gateway import _commands as commands

    return commands


def list_keys(args: argparse.Namespace) -> int:
    answer, code = _run(args, lambda api: api.request("GET", "/v1/keys"), lambda engine, who, _now: _commands().list_keys(engine, who))
    if code:
        return code
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
        return 0
    keys = answer.get("keys", [])
    if not keys:
        print("no keys")
        return 0
    print(f"{'PREFIX':<18}{'ORG':<16}{'ADMIN':<7}{'CREATED':<22}AGENT")
    for k in keys:
        print(f"{k['prefix']:<18}{k['org']:<16}{'yes' if k['admin'] else 'no':<7}{k['created_at'] or '':<22}{k['agent'] or '-'}")
    return 0


def revoke_key(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    whole = args.prefix if args.prefix.startswith("axme_sa_") and len(args.prefix) >= 40 else None
    if whole and args.gateway:
        return _fail("pass the key's prefix (as 'keys list' shows it), not the whole key, to --gateway", 2)

    def in_db(engine: Any, who: Any, now: Any) -> Any:
        return _commands().revoke_key(engine, who, args.prefix[:16] if whole else args.prefix, now, whole_key=whole)[0]

    answer, code = _run(args, lambda api: api.request("DELETE", f"/v1/keys/{quote(args.prefix, safe='')}"), in_db)
    if code:
        return code
    k = answer["revoked"]
    print(f"revoked {k['prefix']} (org {k['org']}{', admin' if k['admin'] else ''}{', agent ' + k['agent'] if k['agent'] else ''})")
    return 0
