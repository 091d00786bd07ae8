"""``axme-meter approvals list|approve|deny``: decide the requests ``action_on_breach: require_approval`` opens.

Like ``keys``: through a running gateway (``--gateway URL`` / ``AXME_GATEWAY_URL`` with an admin key,
``--api-key`` / ``AXME_API_KEY``; the approver recorded is the key's prefix) or on the database directly
(``--db URL``; the approver recorded is ``cli``). Both go through ``gateway._commands``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any
from urllib.parse import quote

from ._help import examples
from ._keys import _commands, _run


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "approvals", help="list, approve or deny requests for more budget",
        description="Requests for more budget, opened when an agent whose policy says action_on_breach: "
        "require_approval reaches a limit (the agent is paused meanwhile).",
        epilog=examples("axme-meter approvals list --gateway http://127.0.0.1:8787", "axme-meter approvals approve apr_0123abcd"))
    sub = parser.add_subparsers(dest="approvals_command", metavar="ACTION")
    listing = sub.add_parser(
        "list", help="list approval requests (pending ones by default)",
        description="List approval requests, newest first: id, agent, policy, spent / limit, the proposed raise, "
        "state and who decided.",
        epilog=examples("axme-meter approvals list                       # pending requests",
                        "axme-meter approvals list --state all --json",
                        "axme-meter approvals list --agent agent://myorg/prod/bot --gateway http://127.0.0.1:8787"))
    listing.add_argument("--state", default="pending", choices=["pending", "approved", "denied", "expired", "all"],
                         help="which requests (default pending)")
    listing.add_argument("--agent", default=None, help="only this agent (address or addr_… id)")
    listing.add_argument("--json", action="store_true", help="print the JSON answer instead of a table")
    _flags(listing)
    listing.set_defaults(handler=list_approvals)
    for decision, text, effect in (("approve", "approve a request", "raises the breached limit by the proposed amount "
                                    "until its window ends and resumes the agent"),
                                   ("deny", "deny a request", "keeps the agent paused (an admin may still resume it)")):
        action = sub.add_parser(decision, help=f"{text}: {effect}", description=f"{text.capitalize()}: {effect}.",
                                epilog=examples(f"axme-meter approvals {decision} apr_0123abcd",
                                                f"axme-meter approvals {decision} apr_0123abcd --gateway http://127.0.0.1:8787"))
        action.add_argument("id", metavar="ID", help="the request's id, as 'approvals list' shows it (apr_…)")
        _flags(action)
        action.set_defaults(handler=decide, decision=decision)
    parser.set_defaults(handler=lambda _args: (parser.print_help(), 2)[1])


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="database URL (default: $AXME_GATEWAY_DB, else the gateway's default SQLite file)")
    parser.add_argument("--gateway", metavar="URL", default=None,
                        help="use a running gateway's /v1/mesh/approvals (needs an admin key); without --db and --gateway, "
                        "$AXME_GATEWAY_URL when set, else the database")
    parser.add_argument("--api-key", metavar="KEY", default=None, help="admin key for --gateway (default: $AXME_API_KEY)")


def _where(args: argparse.Namespace) -> argparse.Namespace:
    """Without ``--db`` or ``--gateway``: the gateway in ``AXME_GATEWAY_URL`` if set (like ``policy``), else the database."""
    if not args.db and not args.gateway and not os.environ.get("AXME_GATEWAY_DB"):
        args.gateway = os.environ.get("AXME_GATEWAY_URL") or None
    return args


def _fail(message: str, code: int = 1) -> int:
    print(f"axme-meter approvals: {message}", file=sys.stderr)
    return code


def list_approvals(args: argparse.Namespace) -> int:
    args = _where(args)
    state = None if args.state == "all" else args.state
    params = {k: v for k, v in {"state": state, "agent": args.agent}.items() if v}
    answer, code = _run(args, lambda api: api.request("GET", "/v1/mesh/approvals", params=params),
                        lambda engine, who, now: _commands().list_approvals(engine, who, now, state=state, agent=args.agent),
                        _fail)
    if code:
        return code
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
        return 0
    found = answer.get("approvals", [])
    if not found:
        print(f"no {args.state if state else ''} approval requests".replace("  ", " "))
        return 0
    print(f"{'ID':<30}{'STATE':<10}{'POLICY':<24}{'SPENT/LIMIT':<20}{'RAISE':<12}{'DECIDED BY':<24}AGENT")
    for a in found:
        print(f"{a['id']:<30}{a['state']:<10}{a['policy']:<24}{'$' + a['spent'] + '/$' + a['limit']:<20}"
              f"{'+$' + a['raise']:<12}{a['decided_by'] or '-':<24}{a['agent']}")
    return 0


def decide(args: argparse.Namespace) -> int:
    args = _where(args)
    answer, code = _run(args, lambda api: api.request("POST", f"/v1/mesh/approvals/{quote(args.id, safe='')}/{args.decision}"),
                        lambda engine, who, now: _commands().decide_approval(engine, who, args.id, args.decision, now,
                                                                             channel="cli"), _fail)
    if code:
        return code
    a = answer["approval"]
    if a["state"] == "approved":
        print(f"approved {a['id']}: {a['policy']} of {a['agent']} is ${a['new_limit']} until {a['resets_at']}; "
              f"the agent is {answer['agent_state']}")
    else:
        print(f"denied {a['id']}: {a['agent']} stays {answer['agent_state']}")
    return 0
