"""Quarantine: spend the gateway refused for good, kept next to the spool with the reason.

An entry lands here only when re-sending it can never succeed: the gateway answered
``conflict`` (its id was recorded with other content) or ``error`` with a final code
(``forbidden``: the key may not write that agent; ``validation_error``), or refused it
on its own with HTTP 403 / 413 / 422. Nothing here is sent again by itself, and
nothing is dropped silently: every refusal is counted, warned about once per agent
(agent, amount, reason), shown by ``axme_meter.transport_status()`` and makes
``axme_meter.flush()`` falsy. ``axme-meter spool quarantine|resend|discard`` lists,
re-sends (after the cause is fixed, e.g. with a key that may write the agent) or
deletes them.

One append-only JSON-lines file per process (``quarantine-<instance>.jsonl``), each
line ``{"at", "gateway_url", "reason": {"code", "message", "status"}, "entry": …}``.
Writers and the CLI lock a file (``flock``) while touching it, and the CLI rewrites in
place, so an append never races a rewrite. ``rejected-*.jsonl`` files of earlier
versions are read as quarantine too.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._protocol import FORBIDDEN, iso, money
from ._entries import Entry

log = logging.getLogger("axme_meter")
PATTERNS = ("quarantine-*.jsonl", "rejected-*.jsonl")


@dataclass(slots=True)
class Refusal:
    """Why the gateway refused an entry for good."""

    code: str
    message: str
    #: HTTP status of the answer that carried the refusal.
    status: int = 200

    def text(self) -> str:
        return f"{self.code}: {self.message}" if self.message and self.message != self.code else self.code


@dataclass(slots=True)
class Held:
    """One quarantined entry as stored (read back by the CLI)."""

    entry: dict[str, Any]
    reason: Refusal
    at: str | None
    gateway_url: str | None
    path: Path
    line: int

    @property
    def id(self) -> str:
        return str(self.entry.get("id"))

    @property
    def agent(self) -> str:
        return str(self.entry.get("agent"))

    @property
    def cost_pico(self) -> int:
        try:
            return Entry.from_spool(self.entry).totals.cost_pico
        except ValueError:
            return 0


@dataclass(slots=True)
class AgentTally:
    entries: int = 0
    cost_pico: int = 0
    reason: str = ""
    codes: set[str] = field(default_factory=set)


@dataclass
class Quarantine:
    """This process's quarantine: the file (when the spool is writable), the counts, the once-per-agent warning."""

    directory: Path | None
    instance: str
    gateway_url: str
    key_prefix: str
    by_agent: dict[str, AgentTally] = field(default_factory=dict)
    #: Held in memory when the spool is not writable (so they are still counted and reported).
    in_memory: list[tuple[Entry, Refusal]] = field(default_factory=list)

    @property
    def path(self) -> Path | None:
        return self.directory / f"quarantine-{self.instance}.jsonl" if self.directory is not None else None

    @property
    def entries(self) -> int:
        return sum(t.entries for t in self.by_agent.values())

    @property
    def cost_pico(self) -> int:
        return sum(t.cost_pico for t in self.by_agent.values())

    def add(self, refused: list[tuple[Entry, Refusal]], *, writable: bool) -> None:
        """Keep refused entries with their reasons (on disk when the spool is ``writable``); warn once per agent."""
        if not refused:
            return
        waiting, self.in_memory = self.in_memory, []  # refused while the disk was unusable: written now if it can be
        if not writable or not self._append(waiting + refused):
            self.in_memory = waiting + refused
        fresh: dict[str, tuple[int, Refusal]] = {}
        for entry, reason in refused:
            tally = self.by_agent.get(entry.agent)
            if tally is None:
                tally = self.by_agent[entry.agent] = AgentTally(reason=reason.text())
                fresh[entry.agent] = (0, reason)
            tally.entries += 1
            tally.cost_pico += entry.totals.cost_pico
            tally.codes.add(reason.code)
            if entry.agent in fresh:
                fresh[entry.agent] = (fresh[entry.agent][0] + entry.totals.cost_pico, reason)
        for agent, (pico, reason) in fresh.items():
            self._warn(agent, pico, reason)

    def refused_code(self, code: str) -> list[str]:
        """Agents with entries refused with ``code`` (e.g. ``forbidden``)."""
        return sorted(a for a, t in self.by_agent.items() if code in t.codes)

    def _warn(self, agent: str, pico: int, reason: Refusal) -> None:
        where = str(self.path) if self.path is not None and self.path.exists() else "memory only: the spool is not writable"
        hint = ""
        if reason.code == FORBIDDEN:
            hint = (f" The key {self.key_prefix} may not write this agent: use a key of its org, or book the spend to an "
                    "agent of your key's org.")
        log.warning("axme_meter: the gateway %s refused $%s of spend for %s (%s); it is kept in quarantine (%s) and not "
                    "re-sent by itself.%s List, re-send or discard it with `axme-meter spool quarantine|resend|discard`.",
                    self.gateway_url, money(pico), agent, reason.text(), where, hint)

    def _append(self, refused: list[tuple[Entry, Refusal]]) -> bool:
        path = self.path
        if path is None:
            return False
        now = iso(time.time())
        lines = "".join(json.dumps({"at": now, "gateway_url": self.gateway_url,
                                    "reason": {"code": r.code, "message": r.message, "status": r.status},
                                    "entry": e.to_spool()}, separators=(",", ":")) + "\n" for e, r in refused)
        try:
            with _locked(path, "a") as fh:
                fh.write(lines)
        except OSError as exc:
            log.warning("axme_meter: could not write the quarantine file %s (%s); keeping refused entries in memory",
                        path, exc.strerror or exc)
            return False
        return True

    def status(self) -> dict[str, object]:
        return {
            "entries": self.entries,
            "cost_usd": money(self.cost_pico),
            "by_agent": {a: {"entries": t.entries, "cost_usd": money(t.cost_pico), "reason": t.reason}
                         for a, t in sorted(self.by_agent.items())},
            "file": str(self.path) if self.path is not None and self.entries else None,
            "on_disk": count_on_disk(self.directory) if self.directory is not None else 0,
        }


# ---------------------------------------------------------------------- reading and rewriting (CLI)


def files(directory: Path) -> list[Path]:
    out: list[Path] = []
    for pattern in PATTERNS:
        out.extend(sorted(directory.glob(pattern)))
    return out


def count_on_disk(directory: Path) -> int:
    """Quarantined entries of every process in this spool directory (a line count)."""
    total = 0
    for path in files(directory):
        try:
            with open(path, "rb") as fh:
                total += sum(1 for line in fh if line.strip())
        except OSError:
            continue
    return total


def read(directory: Path) -> list[Held]:
    """Every quarantined entry in ``directory``; unreadable lines are skipped with a warning."""
    out: list[Held] = []
    for path in files(directory):
        try:
            with _locked(path, "r") as fh:
                lines = fh.read().splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines):
            held = _parse(line, path, number)
            if held is not None:
                out.append(held)
    return out


def rewrite(path: Path, drop: Callable[[Held], bool], update: Callable[[Held], Refusal | None] | None = None) -> int:
    """Rewrite one quarantine file in place under its lock: remove the lines ``drop`` selects, and give
    others a new reason (``update``). Returns how many lines were removed; removes an emptied file."""
    removed = 0
    with _locked(path, "r+") as fh:
        kept: list[str] = []
        for number, line in enumerate(fh.read().splitlines()):
            held = _parse(line, path, number)
            if held is None:
                kept.append(line)  # not ours to judge: keep as it is
                continue
            if drop(held):
                removed += 1
                continue
            reason = update(held) if update is not None else None
            if reason is not None:
                data = json.loads(line)
                data["reason"] = {"code": reason.code, "message": reason.message, "status": reason.status}
                data["at"] = iso(time.time())
                line = json.dumps(data, separators=(",", ":"))
            kept.append(line)
        fh.seek(0)
        fh.truncate()
        fh.write("".join(k + "\n" for k in kept))
    if not kept:
        path.unlink(missing_ok=True)
    return removed


def _parse(line: str, path: Path, number: int) -> Held | None:
    if not line.strip():
        return None
    try:
        data = json.loads(line)
    except ValueError:
        log.warning("axme_meter: skipping an unreadable line %d of %s", number + 1, path)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("entry"), dict):
        return None
    raw = data.get("reason")
    if isinstance(raw, dict):
        reason = Refusal(str(raw.get("code") or "refused"), str(raw.get("message") or ""), int(raw.get("status") or 200))
    else:  # rejected-*.jsonl of earlier versions: a plain string
        reason = Refusal("refused", str(raw or ""), 0)
    return Held(data["entry"], reason, data.get("at"), data.get("gateway_url"), path, number)


class _locked:
    """``open`` plus an exclusive ``flock`` for the life of the ``with`` block."""

    def __init__(self, path: Path, mode: str) -> None:
        self.path, self.mode = path, mode

    def __enter__(self) -> Any:
        import fcntl

        for _ in range(3):
            self.fh = open(self.path, self.mode)
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX)
            if self.mode != "a" or _same_file(self.fh.fileno(), self.path):
                return self.fh
            self.fh.close()  # the CLI emptied and removed it while we waited: append to a fresh file
        return self.fh

    def __exit__(self, *exc: object) -> None:
        self.fh.close()  # closing releases the lock


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


__all__ = ["Held", "Quarantine", "Refusal", "count_on_disk", "files", "read", "rewrite"]
