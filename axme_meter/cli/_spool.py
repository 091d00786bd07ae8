"""``axme-meter spool``: look into the client's spool, and decide what happens to spend stuck in it.

    axme-meter spool list                     every spool directory: its gateway and key, pending, quarantined
    axme-meter spool quarantine               the entries the gateway refused for good, with the reasons
    axme-meter spool resend [ID ...]          re-send quarantined entries (all without IDs) to the gateway now
    axme-meter spool discard (ID ... | --all) delete quarantined entries
    axme-meter spool retarget DIR             hand the unsent spend of another directory to the current gateway and key

The *current identity* is the gateway URL and key from ``--gateway`` / ``--api-key`` or
``AXME_GATEWAY_URL`` / ``AXME_API_KEY``, as for the library. Spool directories are
per (gateway URL, key fingerprint): a process adopts only the directory of its own
identity, so spend booked under another key or for a gateway that moved waits until
``retarget`` hands it over. Nothing here starts a heartbeat sender or adopts a spool
on its own: ``resend`` posts exactly the entries asked for, once.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._protocol import MAX_BATCH, money, parse_results
from .._transport import _quarantine
from .._transport._answers import ACCEPTED, SPLIT, UNAUTHORIZED, classify, describe, refusal
from .._transport._entries import Entry
from .._transport._gateway_http import GatewayHTTP, GatewayUnreachable, validate_url
from .._transport._quarantine import Held, Refusal
from ._help import examples
from .._transport._spool import (
    IDENTITY_FILE,
    SpoolFileError,
    dead_states,
    default_root,
    key_fingerprint,
    key_prefix,
    namespace,
    read_identity,
    read_state,
)


_DESCRIPTION = """\
Look into the client's spool and decide what happens to spend stuck in it.

Spool directories are per (gateway URL, API key): a process sends only the spend booked
under its own gateway URL and key. The current identity is --gateway / --api-key, or
AXME_GATEWAY_URL / AXME_API_KEY. Quarantined entries are spend the gateway refused for
good (for example an agent the key may not write); they are never re-sent on their own.
"""


class SpoolError(Exception):
    """A user error: printed as one line, exit status 2 (1 for delivery failures)."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("spool", help="inspect the client spool: pending, quarantined and stranded spend",
                                   description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=examples("axme-meter spool list", "axme-meter spool quarantine",
                                                   "axme-meter spool resend"))
    sub = parser.add_subparsers(dest="spool_command", metavar="ACTION")
    for name, help_text, example in (
        ("list", "every spool directory with its gateway, key prefix, pending and quarantined spend",
         "axme-meter spool list --json"),
        ("quarantine", "the entries the gateway refused for good, with the reasons", "axme-meter spool quarantine"),
        ("resend", "re-send quarantined entries now (all of the current identity without IDs)",
         "axme-meter spool resend hb_3f9c0a1b2c3d_4_1"),
        ("discard", "delete quarantined entries (the spend they carry is then gone for good)",
         "axme-meter spool discard --all"),
        ("retarget", "move another directory's unsent spend to the current gateway URL and key",
         "axme-meter spool retarget 1a2b3c4d5e6f7a8b --gateway https://gw.example.com"),
    ):
        cmd = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                             epilog=examples(example))
        _common_flags(cmd)
        if name in ("resend", "discard"):
            cmd.add_argument("ids", nargs="*", metavar="ID", help="entry ids (from `axme-meter spool quarantine`)")
        if name in ("quarantine", "resend", "discard"):
            cmd.add_argument("--dir", dest="directory", metavar="DIR",
                             help="a spool directory name from `spool list` (default: the current identity's)")
        if name == "discard":
            cmd.add_argument("--all", action="store_true", help="discard every quarantined entry of the directory")
        if name == "resend":
            cmd.add_argument("--allow-insecure-http", action="store_true", help="allow http:// to a non-loopback host")
        if name == "retarget":
            cmd.add_argument("source", metavar="DIR", help="the directory name (from `spool list`) to move spend out of")
            cmd.add_argument("--with-quarantine", action="store_true", help="move its quarantined entries too")
        cmd.set_defaults(handler=_run, spool_command=name)
    parser.set_defaults(handler=_run, spool_command="list")
    _common_flags(parser)


def _common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spool-dir", default=argparse.SUPPRESS, help="spool root (default: AXME_METER_SPOOL_DIR or the "
                        "per-user cache dir)")
    parser.add_argument("--gateway", default=argparse.SUPPRESS, help="gateway URL (default: AXME_GATEWAY_URL)")
    parser.add_argument("--api-key", default=argparse.SUPPRESS, help="API key (default: AXME_API_KEY)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")


def _run(args: argparse.Namespace) -> int:
    try:
        return _COMMANDS[args.spool_command](args)
    except SpoolError as exc:
        print(f"axme-meter spool {args.spool_command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"axme-meter spool {args.spool_command}: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------- where things are


@dataclass
class Directory:
    path: Path
    identity: dict[str, str] | None
    current: bool
    pending_entries: int = 0
    pending_pico: int = 0
    unreadable: int = 0
    held: list[Held] = field(default_factory=list)
    corrupt: int = 0

    def row(self) -> dict[str, Any]:
        ident = self.identity or {}
        return {
            "dir": self.path.name, "current": self.current,
            "gateway_url": ident.get("gateway_url"), "key_prefix": ident.get("key_prefix"),
            "pending_entries": self.pending_entries, "pending_usd": money(self.pending_pico),
            "quarantined_entries": len(self.held), "quarantined_usd": money(sum(h.cost_pico for h in self.held)),
            "corrupt_files": self.corrupt, "unreadable_files": self.unreadable,
        }


def _root(args: argparse.Namespace) -> Path:
    given = getattr(args, "spool_dir", None) or os.environ.get("AXME_METER_SPOOL_DIR")
    return Path(given) if given else default_root()


def _identity(args: argparse.Namespace, *, required: bool) -> tuple[str, str | None] | None:
    url = getattr(args, "gateway", None) or os.environ.get("AXME_GATEWAY_URL")
    key = getattr(args, "api_key", None) or os.environ.get("AXME_API_KEY")
    if not url:
        if required:
            raise SpoolError("no gateway URL: pass --gateway URL or set AXME_GATEWAY_URL")
        return None
    return url.rstrip("/"), key


def _scan(root: Path, current: str | None) -> list[Directory]:
    return [_inspect(path, path.name == current) for path in _dirs(root)]


def _inspect(path: Path, current: bool) -> Directory:
    found = Directory(path, read_identity(path), current)
    for state in sorted(path.glob("proc-*.json")):
        try:
            entries = read_state(state)
        except SpoolFileError:
            found.unreadable += 1
            continue
        for body in entries:
            try:
                entry = Entry.from_spool(body)
            except ValueError:
                continue
            found.pending_entries += 1
            found.pending_pico += entry.totals.cost_pico
    found.held = _quarantine.read(path)
    found.corrupt = len(list(path.glob("*.corrupt")))
    return found


def _chosen_dir(args: argparse.Namespace) -> Path:
    root = _root(args)
    if getattr(args, "directory", None):
        path = root / args.directory
        if not path.is_dir() or args.directory in ("", ".", ".."):
            raise SpoolError(f"no spool directory {args.directory!r} in {root}; see `axme-meter spool list`")
        return path
    ident = _identity(args, required=True)
    assert ident is not None
    return root / namespace(*ident)


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if getattr(args, "json", False) else text)


# ---------------------------------------------------------------------- list / quarantine


def _list(args: argparse.Namespace) -> int:
    root = _root(args)
    ident = _identity(args, required=False)
    current = namespace(*ident) if ident else None
    dirs = _scan(root, current)
    rows = [d.row() for d in dirs]
    if not rows:
        _print(args, [], f"no spool directories in {root}")
        return 0
    lines = [f"spool root: {root}"]
    for d in dirs:
        r = d.row()
        who = (f"{r['gateway_url']} with key {r['key_prefix']}" if d.identity
               else "an earlier version's directory (identity unknown)")
        mark = "  (current: AXME_GATEWAY_URL and AXME_API_KEY)" if d.current else ""
        lines.append(f"{r['dir']}  {who}{mark}")
        lines.append(f"    pending ${r['pending_usd']} in {r['pending_entries']} entries; quarantined "
                     f"${r['quarantined_usd']} in {r['quarantined_entries']} entries"
                     + (f"; {r['corrupt_files']} corrupt file(s) set aside" if r["corrupt_files"] else "")
                     + (f"; {r['unreadable_files']} unreadable file(s)" if r["unreadable_files"] else ""))
        if not d.current and r["pending_entries"]:
            lines.append(f"    not sent by any process of the current identity: `axme-meter spool retarget {r['dir']}` "
                         "hands it to the current gateway and key")
    _print(args, rows, "\n".join(lines))
    return 0


def _held_row(h: Held) -> dict[str, Any]:
    return {"id": h.id, "agent": h.agent, "intent_id": h.entry.get("intent_id"), "cost_usd": money(h.cost_pico),
            "reason": h.reason.text(), "code": h.reason.code, "at": h.at, "gateway_url": h.gateway_url,
            "file": h.path.name}


def _show_quarantine(args: argparse.Namespace) -> int:
    directory = _chosen_dir(args)
    held = _quarantine.read(directory) if directory.is_dir() else []
    rows = [_held_row(h) for h in held]
    if not rows:
        _print(args, [], f"nothing quarantined in {directory}")
        return 0
    total = sum(h.cost_pico for h in held)
    lines = [f"{len(rows)} quarantined entries, ${money(total)}, in {directory}:"]
    for r in rows:
        lines.append(f"  {r['id']}  {r['agent']}  {r['intent_id'] or '-'}  ${r['cost_usd']}  {r['at'] or ''}\n"
                     f"      {r['reason']}")
    lines.append("re-send with `axme-meter spool resend [ID ...]` once the cause is fixed, or delete with "
                 "`axme-meter spool discard ID ...`")
    _print(args, rows, "\n".join(lines))
    return 0


def _select(args: argparse.Namespace, everything: bool) -> tuple[str, list[Held]]:
    """The quarantined entries a command acts on, and where they were looked for.

    Named IDs are looked for in every spool directory unless ``--dir`` narrows it (ids are unique,
    and the key used to re-send them is often not the one they were booked under); without IDs,
    the current identity's directory (or ``--dir``)."""
    ids = list(getattr(args, "ids", []) or [])
    if ids and not getattr(args, "directory", None):
        root = _root(args)
        where = str(root)
        held = [h for d in _dirs(root) for h in _quarantine.read(d)]
    else:
        directory = _chosen_dir(args)
        where = str(directory)
        held = _quarantine.read(directory) if directory.is_dir() else []
    if everything or not ids:
        return where, held
    wanted = set(ids)
    chosen = [h for h in held if h.id in wanted]
    missing = wanted - {h.id for h in chosen}
    if missing:
        raise SpoolError(f"not quarantined in {where}: {', '.join(sorted(missing))}")
    return where, chosen


def _dirs(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir())
    except FileNotFoundError:
        return []


def _rewrite(held: list[Held], drop: set[tuple[Path, str]], update: dict[tuple[Path, str], Refusal]) -> None:
    """Apply decisions to the quarantine files, by (file, entry id): lines appended meanwhile are kept."""
    for path in sorted({h.path for h in held}):
        _quarantine.rewrite(path, lambda h: (h.path, h.id) in drop, lambda h: update.get((h.path, h.id)))


# ---------------------------------------------------------------------- discard


def _discard(args: argparse.Namespace) -> int:
    if not args.ids and not args.all:
        raise SpoolError("name the entries to discard (IDs from `axme-meter spool quarantine`) or pass --all")
    where, chosen = _select(args, args.all)
    _rewrite(chosen, {(h.path, h.id) for h in chosen}, {})
    total = sum(h.cost_pico for h in chosen)
    _print(args, {"discarded": len(chosen), "cost_usd": money(total)},
           f"discarded {len(chosen)} quarantined entries (${money(total)}) from {where}")
    return 0


# ---------------------------------------------------------------------- resend


@dataclass
class Outcome:
    delivered: list[Held] = field(default_factory=list)
    refused: dict[tuple[Path, str], Refusal] = field(default_factory=dict)
    kept: int = 0
    failure: str | None = None


def _resend(args: argparse.Namespace) -> int:
    url, key = _identity(args, required=True)  # type: ignore[misc]
    try:
        url = validate_url(url, allow_insecure_http=args.allow_insecure_http)
    except ValueError as exc:
        raise SpoolError(str(exc)) from None
    where, chosen = _select(args, False)
    if not chosen:
        _print(args, {"resent": 0}, f"nothing quarantined in {where}")
        return 0
    sendable: list[tuple[Held, Entry]] = []
    for h in chosen:
        try:
            sendable.append((h, Entry.from_spool(h.entry)))
        except ValueError as exc:
            print(f"axme-meter spool resend: skipping {h.id}: {exc}", file=sys.stderr)
    outcome = Outcome()
    http = GatewayHTTP(url, key)
    try:
        for i in range(0, len(sendable), MAX_BATCH):
            _post(http, key, sendable[i : i + MAX_BATCH], outcome)
            if outcome.failure:
                break
    finally:
        http.close()
    _rewrite(chosen, {(h.path, h.id) for h in outcome.delivered}, outcome.refused)
    delivered = sum(e.totals.cost_pico for h, e in sendable if h in outcome.delivered)
    summary = {"resent": len(sendable), "delivered": len(outcome.delivered), "delivered_usd": money(delivered),
               "still_refused": len(outcome.refused), "failure": outcome.failure}
    lines = [f"re-sent {len(sendable)} entries to {url}: {len(outcome.delivered)} delivered (${money(delivered)})"]
    for h, e in sendable:
        reason = outcome.refused.get((h.path, h.id))
        if reason is not None:
            lines.append(f"  still refused: {h.id} {h.agent} ${money(e.totals.cost_pico)}: {reason.text()}")
    if outcome.failure:
        lines.append(f"stopped: {outcome.failure}; the rest stays quarantined")
    _print(args, summary, "\n".join(lines))
    return 0 if len(outcome.delivered) == len(sendable) else 1


def _post(http: GatewayHTTP, key: str | None, batch: list[tuple[Held, Entry]], outcome: Outcome) -> None:
    """One request and its per-entry outcomes; a request refused as a whole is retried entry by entry."""
    try:
        answer = http.post("/v1/mesh/heartbeat", {"heartbeats": [e.to_wire() for _, e in batch]})
    except GatewayUnreachable as exc:
        outcome.failure = f"gateway unreachable ({exc})"
        return
    kind = classify(answer)
    if kind == ACCEPTED:
        results = parse_results(answer.body) or {}
        for h, e in batch:
            result = results.get(e.id)
            if result is None:
                outcome.kept += 1
            elif result.delivered:
                outcome.delivered.append(h)
            else:
                outcome.refused[(h.path, h.id)] = Refusal(result.code or result.status, result.error or "", answer.status)
    elif kind == SPLIT and len(batch) > 1:
        for one in batch:
            _post(http, key, [one], outcome)
    elif kind == SPLIT:
        outcome.refused[(batch[0][0].path, batch[0][0].id)] = refusal(answer)
    elif kind == UNAUTHORIZED:
        outcome.failure = f"the gateway refused the API key {key_prefix(key)} (HTTP 401: unknown or revoked)"
    else:
        outcome.failure = f"the gateway answered HTTP {answer.status} ({describe(answer)})"


# ---------------------------------------------------------------------- retarget


def _retarget(args: argparse.Namespace) -> int:
    url, key = _identity(args, required=True)  # type: ignore[misc]
    root = _root(args)
    source = root / args.source
    if args.source in ("", ".", "..") or "/" in args.source or not source.is_dir():
        raise SpoolError(f"no spool directory {args.source!r} in {root}; see `axme-meter spool list`")
    target = root / namespace(url, key)
    if source == target:
        raise SpoolError(f"{args.source} already belongs to {url} with key {key_prefix(key)}")
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_identity(target, url, key)
    moved_files = moved_entries = 0
    moved_pico = 0
    for state, lock, fd in dead_states(source):
        try:
            try:
                entries = [Entry.from_spool(b) for b in read_state(state)]
            except (SpoolFileError, ValueError) as exc:
                print(f"axme-meter spool retarget: leaving {state.name} where it is: {exc}", file=sys.stderr)
                continue
            os.replace(state, target / f"proc-{secrets.token_hex(6)}.json")  # no lock: the next process adopts it
            lock.unlink(missing_ok=True)
            moved_files += 1
            moved_entries += len(entries)
            moved_pico += sum(e.totals.cost_pico for e in entries)
        finally:
            os.close(fd)
    moved_quarantine = 0
    if args.with_quarantine:
        for path in _quarantine.files(source):
            os.replace(path, target / f"quarantine-{secrets.token_hex(6)}.jsonl")
            moved_quarantine += 1
    live = len(list(source.glob("proc-*.json")))
    summary = {"from": args.source, "to": target.name, "gateway_url": url, "key_prefix": key_prefix(key),
               "files": moved_files, "entries": moved_entries, "cost_usd": money(moved_pico),
               "quarantine_files": moved_quarantine, "left_by_live_processes": live}
    text = (f"moved {moved_entries} unsent entries (${money(moved_pico)}) in {moved_files} file(s) from {args.source} to "
            f"{target.name} ({url} with key {key_prefix(key)}); the next process using that gateway and key sends them")
    if live:
        text += f"\n{live} file(s) belong to processes still running and were left in place"
    _print(args, summary, text)
    return 0


def _write_identity(directory: Path, url: str, key: str | None) -> None:
    path = directory / IDENTITY_FILE
    if not path.exists():
        path.write_text(json.dumps({"gateway_url": url, "key_fingerprint": key_fingerprint(key),
                                    "key_prefix": key_prefix(key)}))


_COMMANDS = {"list": _list, "quarantine": _show_quarantine, "resend": _resend, "discard": _discard, "retarget": _retarget}

__all__ = ["register"]
