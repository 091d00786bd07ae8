"""The disk spool: unsent heartbeat entries survive crashes, restarts and outages.

Layout, per gateway (``<spool_dir>/<sha256(gateway url)[:16]>/``)::

    proc-<instance>.lock    flock-ed by the live process for its whole life
    proc-<instance>.json    that process's complete unsent state (open + frozen entries)
    rejected-<instance>.jsonl  entries the gateway refused as invalid (kept, never re-sent)

Why one state file per process instead of a queue of batch files: the state
file is rewritten atomically (tmp + ``os.replace``) as a whole, so "pending
checkpoint" and "drained batch" can never both hold the same spend. Every entry
carries its idempotency id from birth, so recovering a file twice (a crash in
the middle of adoption) only produces gateway-side "duplicate" answers, never
double counting. A dead process's file is adopted only when its flock is free,
so two live processes never send the same entries.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("axme_meter")
_warned_unwritable = False


def default_root() -> Path:
    """Per-user cache dir (``~/.cache/axme_meter/spool`` on Linux); imported lazily to keep import fast."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("axme_meter")) / "spool"


def namespace(gateway_url: str) -> str:
    """Spool entries belong to one gateway: switching URLs must not replay them elsewhere."""
    return hashlib.sha256(gateway_url.rstrip("/").encode()).hexdigest()[:16]


def has_orphans(root: Path | None, gateway_url: str) -> bool:
    """Cheap exit-time test: is there any spooled state (ours or a dead process's) for this gateway?"""
    try:
        directory = (root or default_root()) / namespace(gateway_url)
        return any(n.startswith("proc-") and n.endswith(".json") for n in os.listdir(directory))
    except OSError:
        return False


class Spool:
    """This process's slot in a spool directory. Memory-only (``writable`` False) if the disk refuses."""

    def __init__(self, root: Path, gateway_url: str, instance: str) -> None:
        self.dir = root / namespace(gateway_url)
        self.instance = instance
        self.state_path = self.dir / f"proc-{instance}.json"
        self.lock_path = self.dir / f"proc-{instance}.lock"
        self._lock_fd: int | None = None
        self.writable = False
        self._has_file = False

    def open(self) -> bool:
        """Create the directory and take our lock. Warns once per process if that fails."""
        import fcntl

        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            for _ in range(3):
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # Another process may have swept our brand-new lock file as stale before we locked it.
                try:
                    if os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino:
                        break
                except FileNotFoundError:
                    pass
                os.close(fd)
            else:
                raise OSError(errno.EBUSY, "could not hold a lock file in the spool directory")
            self._lock_fd = fd
            probe = self.dir / f".probe-{self.instance}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            self._warn_unwritable(exc)
            self.close()
            return False
        self.writable = True
        return True

    def _warn_unwritable(self, exc: OSError) -> None:
        global _warned_unwritable
        if not _warned_unwritable:
            _warned_unwritable = True
            log.warning(
                "axme_meter: spool directory %s is not writable (%s); unsent heartbeats are kept in memory only "
                "and are lost if the process is killed. Set AXME_METER_SPOOL_DIR to a writable directory.",
                self.dir,
                exc.strerror or exc,
            )

    def save(self, entries: list[dict[str, Any]]) -> None:
        """Atomically replace our state file (removed when there is nothing left to send)."""
        if not self.writable:
            return
        try:
            if not entries:
                if self._has_file:
                    self.state_path.unlink(missing_ok=True)
                    self._has_file = False
                return
            tmp = self.state_path.with_name(self.state_path.name + ".tmp")
            tmp.write_text(json.dumps({"instance": self.instance, "pid": os.getpid(), "entries": entries}, separators=(",", ":")))
            os.replace(tmp, self.state_path)
            self._has_file = True
        except OSError as exc:
            self.writable = False
            self._warn_unwritable(exc)

    def orphans(self) -> list[tuple[Path, Path, int]]:
        """State files of dead processes, each with its (now held) lock: ``(state, lock, fd)``.

        The caller must :meth:`save` the adopted entries first and then :meth:`release_orphans`.
        """
        import fcntl

        found: list[tuple[Path, Path, int]] = []
        if not self.writable:
            return found
        try:
            names = os.listdir(self.dir)
        except OSError:
            return found
        present = set(names)
        for name in names:
            if not name.startswith("proc-") or name in (self.state_path.name, self.lock_path.name):
                continue
            if name.endswith(".lock"):
                stem = name[: -len(".lock")]
                if stem + ".json" not in present:
                    self._remove_stale_lock(self.dir / name)  # a process that died with nothing unsent
                continue
            if not name.endswith(".json"):
                continue
            state = self.dir / name
            lock = self.dir / (name[: -len(".json")] + ".lock")
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    log.debug("axme_meter: cannot lock %s: %s", lock, exc)
                continue  # its owner is alive
            found.append((state, lock, fd))
        return found

    @staticmethod
    def _remove_stale_lock(lock: Path) -> None:
        """Delete a dead process's lock file (and any half-written tmp); a live owner keeps its lock."""
        import fcntl

        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return
        try:
            lock.unlink(missing_ok=True)
            lock.with_name(lock.name[: -len(".lock")] + ".json.tmp").unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            os.close(fd)

    @staticmethod
    def read(state: Path) -> list[dict[str, Any]]:
        """Entries of a spooled state file; an unreadable file yields nothing (and is kept aside)."""
        try:
            data = json.loads(state.read_text())
            entries = data.get("entries") if isinstance(data, dict) else None
            return [e for e in entries or [] if isinstance(e, dict)]
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("axme_meter: unreadable spool file %s (%s); moved aside", state, exc)
            try:
                os.replace(state, state.with_name(state.name + ".corrupt"))
            except OSError:
                pass
            return []

    @staticmethod
    def release_orphans(orphans: list[tuple[Path, Path, int]]) -> None:
        """Delete adopted files (only after our own state file holds their entries)."""
        for state, lock, fd in orphans:
            try:
                state.unlink(missing_ok=True)
                state.with_name(state.name + ".tmp").unlink(missing_ok=True)
                lock.unlink(missing_ok=True)
            except OSError:
                pass
            finally:
                os.close(fd)

    def reject(self, entries: list[dict[str, Any]], reason: str) -> None:
        """Keep entries the gateway refused as invalid: never re-sent, never silently dropped."""
        if not self.writable or not entries:
            return
        try:
            with open(self.dir / f"rejected-{self.instance}.jsonl", "a") as fh:
                for entry in entries:
                    fh.write(json.dumps({"reason": reason, "entry": entry}, separators=(",", ":")) + "\n")
        except OSError:
            pass

    def close(self, *, remove_lock: bool = False) -> None:
        """Release our lock (the state file stays for the next process to adopt)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            if remove_lock and not self._has_file:
                try:
                    self.lock_path.unlink(missing_ok=True)
                except OSError:
                    pass
            os.close(fd)

    def forget_after_fork(self) -> None:
        """In a fork child: close the inherited lock fd *without* unlocking (the parent still owns it)."""
        fd, self._lock_fd = self._lock_fd, None
        self.writable = False
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
