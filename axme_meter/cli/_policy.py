"""``axme-meter policy set|get|delete AGENT``: manage an agent's cost policy on the gateway.

Also home of :class:`GatewayAPI`, the small admin HTTP client shared by ``report``
and the demo: it resolves the gateway URL and key (flags, then ``AXME_GATEWAY_URL``
/ ``AXME_API_KEY``) and turns every failure into one readable :class:`GatewayError`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import httpx

#: CLI flag -> policy field, for the money limits (Decimal strings on the wire).
MONEY_FLAGS = {
    "max_cost_per_hour": "max_cost_per_hour_usd",
    "max_cost_per_day": "max_cost_per_day_usd",
    "max_cost_per_month": "max_cost_per_month_usd",
    "max_cost_per_intent": "max_cost_per_intent_usd",
}
COUNT_FLAGS = {"max_intents_per_day": "max_intents_per_day", "max_intents_per_hour": "max_intents_per_hour"}


class GatewayError(Exception):
    """A gateway call failed; the message says what to do about it."""


def agent_path(agent: str) -> str:
    """``addr_…`` ids pass through; full ``agent://`` addresses are percent-encoded (the gateway accepts both)."""
    return quote(agent, safe="") if "://" in agent else quote(agent, safe="_-.")


class GatewayAPI:
    """Admin calls to an AXME-compatible gateway over httpx (sync)."""

    def __init__(self, url: str | None, api_key: str | None, *, timeout: float = 10.0) -> None:
        url = url or os.environ.get("AXME_GATEWAY_URL")
        api_key = api_key or os.environ.get("AXME_API_KEY")
        if not url:
            raise GatewayError("no gateway URL: pass --gateway URL or set AXME_GATEWAY_URL (e.g. http://127.0.0.1:8787)")
        if not api_key:
            raise GatewayError("no API key: pass --api-key KEY or set AXME_API_KEY (policies need an admin key)")
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers={"x-api-key": api_key}, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GatewayAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise GatewayError(f"cannot reach the gateway at {self.url}: {exc.__class__.__name__}: {exc}") from None
        if response.status_code >= 400:
            raise GatewayError(_describe_error(response))
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise GatewayError(f"{method} {path}: the gateway answered {response.status_code} with non-JSON") from None

    def put_policy(self, agent: str, policy: dict[str, Any]) -> Any:
        return self.request("PUT", f"/v1/mesh/agents/{agent_path(agent)}/policies/cost", json=policy)

    def get_policy(self, agent: str) -> Any:
        return self.request("GET", f"/v1/mesh/agents/{agent_path(agent)}/policies/cost")

    def delete_policy(self, agent: str) -> Any:
        return self.request("DELETE", f"/v1/mesh/agents/{agent_path(agent)}/policies/cost")

    def agents(self, window: str = "day") -> list[dict[str, Any]]:
        body = self.request("GET", "/v1/mesh/agents", params={"window": window})
        return list(body.get("agents", [])) if isinstance(body, dict) else []

    def agent(self, agent: str) -> Any:
        return self.request("GET", f"/v1/mesh/agents/{agent_path(agent)}")

    def costs(self, agent: str, window: str = "day") -> Any:
        return self.request("GET", f"/v1/mesh/agents/{agent_path(agent)}/costs", params={"window": window})

    def events(self) -> Any:
        return self.request("GET", "/v1/mesh/events")


def _describe_error(response: httpx.Response) -> str:
    where = f"{response.request.method} {response.request.url.path}"
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        error = {}
    message = error.get("message") if isinstance(error, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    hint = {401: " (is the API key right?)", 403: " (policies need an admin key)", 404: " (unknown agent or path)"}
    text = f"{where}: HTTP {response.status_code}"
    if code:
        text += f" {code}"
    text += f": {message or response.text[:300] or response.reason_phrase}"
    return text + hint.get(response.status_code, "")


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", metavar="URL", help="gateway base URL (default: $AXME_GATEWAY_URL)")
    parser.add_argument("--api-key", metavar="KEY", help="gateway API key (default: $AXME_API_KEY)")


def _money(value: str) -> str:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount in USD: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise argparse.ArgumentTypeError(f"must be a finite amount >= 0: {value!r}")
    return format(amount, "f")  # the gateway takes plain decimal strings only (no exponent: "1E+3" is refused)


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {value!r}")
    return number


def _thresholds(value: str) -> list[float]:
    try:
        return [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fractions like 0.5,0.8,1.0, got {value!r}") from None


def build_policy(args: argparse.Namespace) -> dict[str, Any]:
    """The PUT body from the flags that were given (unset flags are left out)."""
    policy: dict[str, Any] = {}
    for flag, name in {**MONEY_FLAGS, **COUNT_FLAGS}.items():
        value = getattr(args, flag)
        if value is not None:
            policy[name] = value
    if args.action:
        policy["action_on_breach"] = args.action
    if args.timezone:
        policy["timezone"] = args.timezone
    if args.alert_thresholds is not None:
        policy["alert_thresholds"] = args.alert_thresholds
    notify = {key: value for key, value in (("email", args.notify_email), ("slack_webhook", args.notify_slack),
                                             ("webhook", args.notify_webhook)) if value}
    if notify:
        policy["notify"] = notify
    return policy


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("policy", help="set, show or delete an agent's cost policy on the gateway")
    actions = parser.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    set_parser = actions.add_parser("set", help="create or replace the cost policy of AGENT")
    set_parser.add_argument("agent", metavar="AGENT", help="agent://org/env/name or its addr_… id")
    for flag in MONEY_FLAGS:
        set_parser.add_argument("--" + flag.replace("_", "-"), dest=flag, type=_money, metavar="USD")
    for flag in COUNT_FLAGS:
        set_parser.add_argument("--" + flag.replace("_", "-"), dest=flag, type=_count, metavar="N")
    set_parser.add_argument("--action", choices=["block", "notify", "pause"], help="what a breach does")
    set_parser.add_argument("--timezone", metavar="IANA", help="windows start at 00:00 in this zone (default UTC)")
    set_parser.add_argument("--alert-thresholds", type=_thresholds, metavar="0.5,0.8,1.0")
    set_parser.add_argument("--notify-email", action="append", metavar="ADDRESS")
    set_parser.add_argument("--notify-slack", metavar="WEBHOOK_URL")
    set_parser.add_argument("--notify-webhook", metavar="URL")
    set_parser.set_defaults(handler=_set)
    for name, handler, text in (("get", _get, "show the cost policy of AGENT"), ("delete", _delete, "remove it")):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("agent", metavar="AGENT")
        sub.set_defaults(handler=handler)
    for sub in (set_parser, *[actions.choices[n] for n in ("get", "delete")]):
        add_connection_flags(sub)
        sub.add_argument("--json", action="store_true", help="print the raw JSON answer")


def _run(args: argparse.Namespace, call: Any) -> int:
    try:
        with GatewayAPI(args.gateway, args.api_key) as api:
            answer = call(api)
    except GatewayError as exc:
        print(f"axme-meter policy: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
    else:
        _print_policy(args.agent, answer)
    return 0


def _set(args: argparse.Namespace) -> int:
    policy = build_policy(args)
    if not policy:
        print("axme-meter policy set: give at least one field, e.g. --max-cost-per-day 50 --action block", file=sys.stderr)
        return 2
    return _run(args, lambda api: api.put_policy(args.agent, policy))


def _get(args: argparse.Namespace) -> int:
    return _run(args, lambda api: api.get_policy(args.agent))


def _delete(args: argparse.Namespace) -> int:
    return _run(args, lambda api: api.delete_policy(args.agent))


def _print_policy(agent: str, answer: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    policy = answer.get("policy", answer) if isinstance(answer, dict) else answer
    table = Table(title=f"cost policy of {agent}", show_header=False)
    if isinstance(policy, dict) and policy:
        for key, value in policy.items():
            shown = "—" if value is None else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
            table.add_row(str(key), shown)
    else:
        table.add_row("policy", "none")
    Console().print(table)
