"""``axme-meter policy set|update|get|delete AGENT``: manage an agent's cost policy on the gateway.

``set`` replaces the whole policy (what ``PUT …/policies/cost`` does); ``update``
reads the current policy, changes only the fields given and puts the result back.
Both check the result on the client first, with the gateway's own rules
(``_policy_check``), so a bad value is one line naming the flag, before any request.

``GatewayAPI`` and friends are re-exported from ``_api`` for older imports.
"""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

from ._api import GatewayAPI, GatewayError, add_connection_flags, agent_path
from ._help import examples
from ._policy_check import (
    ACTIONS, APPROVAL_FLAGS, COUNT_FLAGS, MONEY_FLAGS, RATE_FLAGS, SPEND_RATE_FLAGS, UNPRICED, check_policy, email_problem,
    url_problem,
)

__all__ = ["GatewayAPI", "GatewayError", "add_connection_flags", "agent_path", "build_policy", "register"]

_AGENT_HELP = "agent://org/env/name or its addr_… id"
_FIELD_FLAGS = {**MONEY_FLAGS, **COUNT_FLAGS, **RATE_FLAGS, **APPROVAL_FLAGS, **SPEND_RATE_FLAGS}
_CLEARABLE = {**{dest.replace("_", "-"): field for dest, field in _FIELD_FLAGS.items()},
              "notify-email": "notify.email", "notify-slack": "notify.slack_webhook", "notify-webhook": "notify.webhook"}


def _money(value: str) -> str:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount in USD: {value!r} (e.g. 50 or 0.25)") from None
    return format(amount, "f")  # the gateway takes plain decimal strings only (no exponent: "1E+3" is refused)


def _multiple(value: str) -> str:
    try:
        multiple = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {value!r} (e.g. 3 or 2.5)") from None
    return format(multiple, "f")


def _count(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None


def _thresholds(value: str) -> list[float]:
    try:
        return [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fractions like 0.5,0.8,1.0, got {value!r}") from None


def _email(value: str) -> str:
    problem = email_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def _url(value: str) -> str:
    problem = url_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def build_policy(args: argparse.Namespace) -> dict[str, Any]:
    """The fields given on the command line, as the JSON body's fields (flags not given are left out)."""
    policy: dict[str, Any] = {}
    for flag, name in _FIELD_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            policy[name] = value
    if args.action:
        policy["action_on_breach"] = args.action
    if args.on_unpriced_call:
        policy["on_unpriced_call"] = args.on_unpriced_call
    if args.timezone:
        policy["timezone"] = args.timezone
    if args.alert_thresholds is not None:
        policy["alert_thresholds"] = args.alert_thresholds
    notify = {key: value for key, value in (("email", args.notify_email), ("slack_webhook", args.notify_slack),
                                             ("webhook", args.notify_webhook)) if value}
    if notify:
        policy["notify"] = notify
    return policy


def merged(current: dict[str, Any], changes: dict[str, Any], unset: list[str]) -> dict[str, Any]:
    """``current`` with ``changes`` applied field by field (``notify`` channel by channel), then ``unset`` removed."""
    out = {key: value for key, value in current.items() if value is not None}
    notify = dict(out.pop("notify", None) or {})
    notify.update(changes.get("notify", {}))
    out.update({key: value for key, value in changes.items() if key != "notify"})
    for name in unset:
        field = _CLEARABLE[name]
        if field.startswith("notify."):
            notify.pop(field.removeprefix("notify."), None)
        else:
            out.pop(field, None)
    out["notify"] = {key: value for key, value in notify.items() if value}
    return out


def _add_field_flags(parser: argparse.ArgumentParser) -> None:
    for flag in MONEY_FLAGS:
        parser.add_argument("--" + flag.replace("_", "-"), dest=flag, type=_money, metavar="USD",
                            help=f"{flag.replace('_', ' ')} in USD, greater than 0")
    for flag in COUNT_FLAGS:
        what = ("loop detection: identical requests (same model and content) per hour, at least 1; the next one "
                "is a breach" if flag == "max_identical_requests_per_hour" else "at least 1 (gates new intents)")
        parser.add_argument("--" + flag.replace("_", "-"), dest=flag, type=_count, metavar="N",
                            help=f"{flag.replace('_', ' ')}, {what}")
    parser.add_argument("--action", choices=ACTIONS, help="what a breach does (default block; alert = notify)")
    parser.add_argument("--on-unpriced-call", choices=UNPRICED,
                        help="a call the client cannot price: book it at conservative rates (estimate, default) or refuse it")
    for flag in RATE_FLAGS:
        parser.add_argument("--" + flag.replace("_", "-"), dest=flag, type=_money, metavar="USD",
                            help=f"{flag.removesuffix('_per_1m').replace('_', ' ')} rate for unpriced calls, USD per 1M tokens")
    parser.add_argument("--approval-raise", dest="approval_raise", type=_money, metavar="USD",
                        help="with --action require_approval: what an approval adds to the breached limit for the rest of "
                        "its window (default: the limit itself)")
    parser.add_argument("--alert-on-spend-rate", dest="alert_on_spend_rate", type=_multiple, metavar="MULTIPLE",
                        help="alert (once an hour) when the hour's projected spend exceeds MULTIPLE times the agent's "
                        "usual hourly spend, e.g. 3 (greater than 1; default off)")
    parser.add_argument("--timezone", metavar="IANA", help="windows start at 00:00 in this zone (default UTC)")
    parser.add_argument("--alert-thresholds", type=_thresholds, metavar="0.5,0.8,1.0",
                        help="alert when this share of a limit is spent (default 0.5,0.8,1.0)")
    parser.add_argument("--notify-email", action="append", type=_email, metavar="ADDRESS",
                        help="email alerts to this address (repeat for several)")
    parser.add_argument("--notify-slack", type=_url, metavar="WEBHOOK_URL", help="Slack incoming-webhook URL for alerts")
    parser.add_argument("--notify-webhook", type=_url, metavar="URL", help="POST alerts as JSON to this URL")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    agent = "agent://myorg/production/research-agent"
    parser = subparsers.add_parser(
        "policy", help="set, update, show or delete an agent's cost policy on the gateway",
        description="Manage the cost policy of one agent on the gateway (needs an admin key). 'set' replaces the whole "
        "policy; 'update' changes only the fields you give.",
        epilog=examples(f"axme-meter policy set {agent} --max-cost-per-day 50 --action block",
                        f"axme-meter policy update {agent} --notify-email ops@example.com",
                        f"axme-meter policy get {agent}"),
    )
    actions = parser.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    set_parser = actions.add_parser(
        "set", help="create or REPLACE the whole cost policy of AGENT (fields not given go back to defaults)",
        description="Create or replace the whole cost policy of AGENT. Fields you do not give are reset to their "
        "defaults (no limit, action block, unpriced calls estimated, timezone UTC, alerts at 0.5,0.8,1.0, no notifications). To change some "
        "fields and keep the rest, use 'axme-meter policy update'.",
        epilog=examples(f"axme-meter policy set {agent} --max-cost-per-day 50 --action block",
                        f"axme-meter policy set {agent} --max-cost-per-hour 5 --max-cost-per-month 500 --timezone Europe/Berlin",
                        f"axme-meter policy set {agent} --max-cost-per-day 50 --max-identical-requests-per-hour 20"),
    )
    update_parser = actions.add_parser(
        "update", help="change only the fields given; keep the rest of AGENT's current policy",
        description="Change some fields of AGENT's existing cost policy and keep all others. --notify-email replaces "
        "the list of addresses; --unset FLAG removes a limit or a notification channel. Fails if AGENT has no policy "
        "yet (create one with 'axme-meter policy set').",
        epilog=examples(f"axme-meter policy update {agent} --max-cost-per-day 75",
                        f"axme-meter policy update {agent} --notify-slack https://hooks.slack.com/services/T000/B000/XXXX",
                        f"axme-meter policy update {agent} --unset max-cost-per-hour"),
    )
    for sub in (set_parser, update_parser):
        sub.add_argument("agent", metavar="AGENT", help=_AGENT_HELP)
        _add_field_flags(sub)
    update_parser.add_argument("--unset", action="append", default=[], choices=sorted(_CLEARABLE), metavar="FLAG",
                               help=f"remove this field (repeatable): {', '.join(sorted(_CLEARABLE))}")
    set_parser.set_defaults(handler=_set)
    update_parser.set_defaults(handler=_update)
    for name, handler, text, description in (
        ("get", _get, "show the cost policy of AGENT", "Show the cost policy of AGENT as the gateway stores it."),
        ("delete", _delete, "remove the cost policy of AGENT", "Remove the cost policy of AGENT: it has no limits afterwards."),
    ):
        sub = actions.add_parser(name, help=text, description=description,
                                 epilog=examples(f"axme-meter policy {name} {agent}", f"axme-meter policy {name} addr_3f9c0e1a --json"))
        sub.add_argument("agent", metavar="AGENT", help=_AGENT_HELP)
        sub.set_defaults(handler=handler)
    for sub in (set_parser, update_parser, actions.choices["get"], actions.choices["delete"]):
        add_connection_flags(sub)
        sub.add_argument("--json", action="store_true", help="print the gateway's answer as JSON (each field once)")


def _fail(args: argparse.Namespace, message: str, code: int = 2) -> int:
    print(f"axme-meter policy {args.policy_command}: {message}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace, call: Any) -> int:
    try:
        with GatewayAPI(args.gateway, args.api_key) as api:
            answer = call(api)
    except GatewayError as exc:
        return _fail(args, str(exc), 1)
    if isinstance(answer, int):  # refused before anything was sent
        return answer
    if args.json:
        print(json.dumps(_policy_of(answer), indent=2, sort_keys=True))
    else:
        _print_policy(args.agent, answer)
    return 0


def _policy_of(answer: Any) -> Any:
    """The gateway repeats the policy's fields at the top level of its answer (AXME compatibility); show them once."""
    if isinstance(answer, dict) and isinstance(answer.get("policy"), dict):
        return answer["policy"]
    return answer


def _set(args: argparse.Namespace) -> int:
    policy = build_policy(args)
    problem = check_policy(policy)
    if problem:
        return _fail(args, problem)
    return _run(args, lambda api: api.put_policy(args.agent, policy))


def _update(args: argparse.Namespace) -> int:
    changes = build_policy(args)
    if not changes and not args.unset:
        return _fail(args, "give at least one field to change, e.g. --max-cost-per-day 75 (or --unset FLAG)")

    def call(api: GatewayAPI) -> Any:
        try:
            current = _policy_of(api.get_policy(args.agent))
        except GatewayError as exc:
            if exc.status == 404:
                raise GatewayError(f"{args.agent} has no cost policy to update; create one with "
                                   f"'axme-meter policy set {args.agent} --max-cost-per-day 50'", 404) from None
            raise
        policy = merged(current if isinstance(current, dict) else {}, changes, args.unset)
        problem = check_policy(policy)
        return _fail(args, problem) if problem else api.put_policy(args.agent, policy)

    return _run(args, call)


def _get(args: argparse.Namespace) -> int:
    return _run(args, lambda api: api.get_policy(args.agent))


def _delete(args: argparse.Namespace) -> int:
    return _run(args, lambda api: api.delete_policy(args.agent))


def _print_policy(agent: str, answer: Any) -> None:
    """Plain aligned text (``rich`` is not a base dependency), one line per field."""
    if isinstance(answer, dict) and answer.get("deleted"):
        print(f"deleted the cost policy of {agent}")
        return
    policy = _policy_of(answer)
    print(f"cost policy of {agent}")
    if not isinstance(policy, dict) or not policy:
        print("  none")
        return
    width = max(len(str(key)) for key in policy)
    for key, value in policy.items():
        shown = "-" if value is None else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        print(f"  {str(key):<{width}}  {shown}")
