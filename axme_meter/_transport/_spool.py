"""The disk spool: unsent heartbeat entries survive crashes, restarts and outages.

Layout, per identity (``<spool_dir>/<namespace>/``, see :func:`namespace`)::

    identity.json              the gateway URL, key fingerprint and key prefix this directory belongs to
    proc-<instance>.lock       flock-ed by the live process for its whole life
    proc-<instance>.json       that process's complete unsent state (open + frozen entries)
    quarantine-<instance>.jsonl  entries the gateway refused for good, with the reason (``_quarantine.py``)
    *.corrupt                  spool files that failed their schema check, kept for inspection

Why a directory per (gateway URL, key fingerprint): spend is delivered only with the
key it was booked under, to the gateway it was booked for. Another key, even an admin
key of the same gateway, never adopts it (it might be accepted there and booked to the
wrong org), and neither does a process configured for another URL. ``axme-meter spool``
lists directories of other identities and re-targets them on request.

Why one state file per process instead of a queue of batch files: the state
file is rewritten atomically (tmp + ``os.replace``) as a whole, so "pending
checkpoint" and "drained batch" can never both hold the same spend. Every entry
carries its idempotency id from birth, so recovering a file twice (a crash in
the middle of adoption) only produces gateway-side "duplicate" answers, never
double counting. A dead process's file is adopted only when its flock is free,
so two live processes never send the same entries.

A disk that fills up (or a directory that cannot be written) turns the spool
memory-only with one warning; every later save tries again, and the first one
that works says so and carries on, without a restart.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

log = logging.getLogger("axme_meter")
_warned_unwritable = False
IDENTITY_FILE = "identity.json"
#: After a failed write, try the disk again at most this often.
RETRY_DISK_EVERY = 1.0


class SpoolFileError(ValueError):
    """A spool file that is not what this version writes (garbage, truncated, empty, wrong shape)."""


def default_root() -> Path:
    """Per-user cache dir (``~/.cache/axme_meter/spool`` on Linux); imported lazily to keep import fast."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("axme_meter")) / "spool"


def key_fingerprint(api_key: str | None) -> str:
    """A short hash that tells keys apart without revealing them (``"nokey"`` without one)."""
    if not api_key:
        return "nokey"
    return hashlib.sha256(b"axme_meter spool identity\0" + api_key.encode()).hexdigest()[:16]


def key_prefix(api_key: str | None) -> str:
    """What logs and ``axme-meter spool`` may show of a key: at most 12 characters, and at most a third of it."""
    if not api_key:
        return "(no key)"
    return api_key[: min(12, len(api_key) // 3)] + "…"


def namespace(gateway_url: str, api_key: str | None) -> str:
    """The spool directory name of one identity: the gateway URL and the key's fingerprint, hashed."""
    ident = f"{gateway_url.rstrip('/')}\n{key_fingerprint(api_key)}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def has_orphans(root: Path | None, gateway_url: str, api_key: str | None) -> bool:
    """Cheap exit-time test: is there any spooled state (ours or a dead process's) for this identity?"""
    try:
        directory = (root or default_root()) / namespace(gateway_url, api_key)
        return any(n.startswith("proc-") and n.endswith(".json") for n in os.listdir(directory))
    except OSError:
        return False


def read_state(state: Path) -> list[Any]:
    """The ``entries`` of a state file, checked for shape; raises :class:`SpoolFileError` for a bad file."""
    try:
        raw = state.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise SpoolFileError(f"unreadable: {exc.strerror or exc}") from None
    if not raw.strip():
        raise SpoolFileError("empty file")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise SpoolFileError(f"not JSON (truncated?): {str(exc)[:100]}") from None
    if not isinstance(data, dict):
        raise SpoolFileError(f"expected a JSON object, got {type(data).__name__}")
    entries = data.get("entries")
    if not isinstance(entries, list):
        raise SpoolFileError(f"'entries' must be a list, got {type(entries).__name__}")
    return entries


def set_aside(path: Path, reason: str) -> None:
    """Move a bad spool file out of the way (``<name>.corrupt``), with a warning; never raises."""
    target = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, target)
    except OSError:
        target = path
    log.warning("axme_meter: spool file %s is not a valid spool file (%s); set aside as %s. "
                "Adoption goes on with the other files.", path.name, reason, target.name)


def read_identity(directory: Path) -> dict[str, str] | None:
    """The identity a spool directory belongs to; ``None`` for directories of earlier versions."""
    try:
        data = json.loads((directory / IDENTITY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def dead_states(directory: Path, exclude: Collection[str] = ()) -> list[tuple[Path, Path, int]]:
    """State files whose process is gone, each with its lock now held by us: ``(state, lock, fd)``.

    Lock files of dead processes that left nothing unsent are removed on the way."""
    import fcntl

    found: list[tuple[Path, Path, int]] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return found
    present = set(names)
    for name in names:
        if not name.startswith("proc-") or name in exclude:
            continue
        if name.endswith(".lock"):
            stem = name[: -len(".lock")]
            if stem + ".json" not in present:
                _remove_stale_lock(directory / name)  # a process that died with nothing unsent
            continue
        if not name.endswith(".json"):
            continue
        state = directory / name
        lock = directory / (name[: -len(".json")] + ".lock")
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


class Spool:
    """This process's slot in a spool directory. Memory-only (``writable`` False) while the disk refuses."""

    def __init__(self, root: Path, gateway_url: str, api_key: str | None, instance: str) -> None:
        self.dir = root / namespace(gateway_url, api_key)
        self.gateway_url = gateway_url
        self.instance = instance
        self.state_path = self.dir / f"proc-{instance}.json"
        self.lock_path = self.dir / f"proc-{instance}.lock"
        self._identity = {"gateway_url": gateway_url.rstrip("/"), "key_fingerprint": key_fingerprint(api_key),
                          "key_prefix": key_prefix(api_key)}
        self._lock_fd: int | None = None
        self.writable = False
        self._has_file = False
        self._failed_at: float | None = None

    # ------------------------------------------------------------------ opening

    def open(self) -> bool:
        """Create the directory and take our lock. Warns once (until it works again) if that fails."""
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
            self._write_identity()
        except OSError as exc:
            self._failed(exc)
            self.close()
            return False
        self._recovered()
        return True

    def _write_identity(self) -> None:
        path = self.dir / IDENTITY_FILE
        try:
            if json.loads(path.read_text()) == self._identity:
                return
        except (OSError, ValueError):
            pass
        tmp = path.with_name(f".{IDENTITY_FILE}.{self.instance}")
        tmp.write_text(json.dumps(self._identity))
        os.replace(tmp, path)

    def _failed(self, exc: OSError) -> None:
        global _warned_unwritable
        self.writable = False
        self._failed_at = time.monotonic()
        if not _warned_unwritable:
            _warned_unwritable = True
            log.warning(
                "axme_meter: spool directory %s is not writable (%s); unsent heartbeats are kept in memory only "
                "and are lost if the process is killed. Writing is retried; set AXME_METER_SPOOL_DIR to a writable "
                "directory if this persists.", self.dir, exc.strerror or exc,
            )

    def _recovered(self) -> None:
        global _warned_unwritable
        if self._failed_at is not None:
            log.warning("axme_meter: spool directory %s is writable again; unsent heartbeats are on disk again", self.dir)
            _warned_unwritable = False
        self._failed_at = None
        self.writable = True

    def _may_retry(self) -> bool:
        return self._failed_at is None or time.monotonic() - self._failed_at >= RETRY_DISK_EVERY

    # ------------------------------------------------------------------ our state

    def save(self, entries: list[dict[str, Any]]) -> bool:
        """Atomically replace our state file (removed when there is nothing left to send).

        False when the disk refused (the caller keeps the state marked changed and tries again later)."""
        if not entries and not self._has_file:
            return True  # nothing on disk, nothing to write
        if self._lock_fd is None:
            if not self._may_retry() or not self.open():
                return False
        try:
            if not entries:
                if self._has_file:
                    self.state_path.unlink(missing_ok=True)
                    self._has_file = False
                return True
            tmp = self.state_path.with_name(self.state_path.name + ".tmp")
            tmp.write_text(json.dumps({"instance": self.instance, "pid": os.getpid(), "entries": entries}, separators=(",", ":")))
            os.replace(tmp, self.state_path)
            self._has_file = True
        except OSError as exc:
            if self.writable or self._may_retry():
                self._failed(exc)
            self.state_path.with_name(self.state_path.name + ".tmp").unlink(missing_ok=True)
            return False
        if not self.writable:
            self._recovered()
        return True

    # ------------------------------------------------------------------ dead processes' files

    def orphans(self) -> list[tuple[Path, Path, int]]:
        """State files of dead processes, each with its (now held) lock: ``(state, lock, fd)``.

        The caller must :meth:`save` the adopted entries first and then :meth:`release_orphans`.
        """
        if not self.writable:
            return []
        return dead_states(self.dir, exclude={self.state_path.name, self.lock_path.name})

    @staticmethod
    def release_orphans(orphans: list[tuple[Path, Path, int]], keep: Collection[Path] = ()) -> None:
        """Delete adopted files (only after our own state file holds their entries); ``keep`` are set aside."""
        for state, lock, fd in orphans:
            try:
                if state in keep:
                    set_aside(state, "some entries failed their schema check; the valid ones were adopted")
                else:
                    state.unlink(missing_ok=True)
                state.with_name(state.name + ".tmp").unlink(missing_ok=True)
                lock.unlink(missing_ok=True)
            except OSError:
                pass
            finally:
                os.close(fd)

    @staticmethod
    def release_orphans_locks(orphans: list[tuple[Path, Path, int]]) -> None:
        """Give dead processes' files back untouched (for the next process to adopt)."""
        for _state, _lock, fd in orphans:
            os.close(fd)

    # ------------------------------------------------------------------ closing

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
        self._failed_at = float("inf")  # never retry: the child's own sender opens its own slot
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
