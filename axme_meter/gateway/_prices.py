"""The gateway's effective price table: the bundled files with the loaded ones (``axme_price_files``) over them.

Why in the database: every replica must serve (``GET /v1/prices``), announce (``pricing_version`` in
heartbeat answers) and re-price heartbeats (``_reprice.py``) with the same table. Each process
keeps one parsed snapshot per database and rebuilds it only when the list of loaded files (names
and digests) changes:

- :func:`effective` reads that list on the connection it is given (one small query), so a
  transaction re-pricing entries sees exactly the files committed for it;
- :class:`GatewayPrices` caches the snapshot for ``REFRESH_SECONDS`` for the hot reads
  (heartbeat answers, grants): a file loaded on one replica is announced by all within a second.

A stored file that no longer parses (this release's loader is stricter than the one that
accepted it) is left out of the table and logged; the gateway keeps serving.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from sqlalchemy import Engine, delete, func, select, text
from sqlalchemy.engine import Connection

from .._pricing import PriceFileError, PriceTable, bundled_files, parse_bytes
from .._pricing._load import PriceFile
from .._pricing._wire import file_to_wire
from ._db import price_files
from ._windows import iso

log = logging.getLogger("axme_meter.gateway")
#: How long a process trusts its snapshot for announcements before asking the database again.
REFRESH_SECONDS = 1.0
_PER_MILLION = 1_000_000  # table rates are pico-dollars per token


@dataclass(frozen=True, slots=True)
class Loaded:
    """One loaded file as stored: its row, parsed."""

    name: str
    parsed: PriceFile
    sha256: str
    loaded_at: int
    loaded_by: str


@dataclass(slots=True)
class Snapshot:
    """The effective table of one database at one moment, with what ``GET /v1/prices`` sends."""

    table: PriceTable
    loaded: list[Loaded]
    #: (name, sha256) of every loaded file, in order: what identifies this snapshot.
    fingerprint: tuple[tuple[str, str], ...]
    #: The dearest input and output rates (pico-dollars per 1M tokens): the default conservative
    #: rates for calls a client cannot price (``AXME_GATEWAY_UNPRICED_RATES`` unset).
    dearest: tuple[int, int]
    _body: bytes | None = field(default=None, repr=False)

    @property
    def version(self) -> str:
        return self.table.version

    def body(self) -> bytes:
        """The JSON of ``GET /v1/prices`` (built once per snapshot)."""
        if self._body is None:
            files = [file_to_wire(f, _bundled_name(f), "bundled") for f in _bundled()]
            files += [file_to_wire(f.parsed, f.name, "loaded", loaded_at=iso(f.loaded_at), loaded_by=f.loaded_by)
                      for f in self.loaded]
            self._body = json.dumps({"pricing_version": self.version, "files": files}, separators=(",", ":")).encode()
        return self._body


@lru_cache(maxsize=1)
def _bundled() -> tuple[PriceFile, ...]:
    """The package's own files, parsed once per process."""
    return tuple(bundled_files())


def _bundled_name(price_file: PriceFile) -> str:
    return price_file.origin.replace("\\", "/").rsplit("/", 1)[-1]


def dearest_rates(table: PriceTable) -> tuple[int, int]:
    """The highest standard input and output rates of any model and period, per 1M tokens: an unknown
    model is assumed to be as dear as the dearest known one."""
    highest = {"input": 0, "output": 0}
    for entry in table.entries.values():
        for period in entry.periods:
            for name in highest:
                highest[name] = max(highest[name], period.rates.get(name, 0))
    return highest["input"] * _PER_MILLION, highest["output"] * _PER_MILLION


def build(loaded: Sequence[Loaded]) -> Snapshot:
    """The snapshot for these loaded files, over the bundled ones."""
    table = PriceTable([*_bundled(), *(f.parsed for f in loaded)])
    return Snapshot(table, list(loaded), tuple((f.name, f.sha256) for f in loaded), dearest_rates(table))


def parse_stored(name: str, content: str) -> PriceFile:
    """A file as the loader reads it: the same ``origin`` (its name) on the gateway and on clients."""
    try:
        raw = content.encode("utf-8")
    except UnicodeEncodeError:
        raise PriceFileError(f"{name}: not valid UTF-8 text (unpaired surrogate). Fix: save the file as UTF-8",
                             origin=name) from None
    return parse_bytes(raw, name)


_snapshots: dict[str, Snapshot] = {}
_lock = threading.Lock()


def _db_key(conn: Connection) -> str:
    return conn.engine.url.render_as_string(hide_password=False)


def effective(conn: Connection) -> Snapshot:
    """The table as committed for ``conn``'s transaction (rebuilt only when the loaded files changed)."""
    key = _db_key(conn)
    rows = conn.execute(select(price_files.c.name, price_files.c.sha256)
                        .order_by(price_files.c.seq, price_files.c.name)).all()
    fingerprint = tuple((r.name, r.sha256) for r in rows)
    snapshot = _snapshots.get(key)
    if snapshot is not None and snapshot.fingerprint == fingerprint:
        return snapshot
    loaded = _read_loaded(conn)
    snapshot = build(loaded)
    with _lock:
        _snapshots[key] = snapshot
    return snapshot


def _read_loaded(conn: Connection) -> list[Loaded]:
    rows = conn.execute(select(price_files).order_by(price_files.c.seq, price_files.c.name)).mappings().all()
    loaded: list[Loaded] = []
    for row in rows:
        try:
            parsed = parse_stored(row["name"], row["content"])
        except PriceFileError as exc:
            log.error("loaded price file %r no longer loads and is left out of the price table: %s", row["name"], exc)
            continue
        loaded.append(Loaded(row["name"], parsed, row["sha256"], row["loaded_at"], row["loaded_by"]))
    return loaded


class GatewayPrices:
    """One gateway process's view of the effective table, refreshed at most every ``REFRESH_SECONDS``."""

    def __init__(self, engine: Engine, refresh: float = REFRESH_SECONDS) -> None:
        self._engine = engine
        self._refresh = refresh
        self._snapshot: Snapshot | None = None
        self._checked = float("-inf")

    def fresh(self) -> Snapshot | None:
        """The snapshot if it was checked within the refresh time (no I/O); else ``None``."""
        if self._snapshot is not None and time.monotonic() - self._checked < self._refresh:
            return self._snapshot
        return None

    def current(self) -> Snapshot:
        """The snapshot, checked against the database when older than the refresh time (blocking I/O)."""
        snapshot = self.fresh()
        if snapshot is None:
            with self._engine.connect() as conn:
                snapshot = effective(conn)
            self._snapshot, self._checked = snapshot, time.monotonic()
        return snapshot

    def latest(self) -> Snapshot:
        """The snapshot as committed now (for ``GET /v1/prices``)."""
        self.invalidate()
        return self.current()

    def invalidate(self) -> None:
        """Check the database on the next read (a file was loaded or unloaded through this replica)."""
        self._checked = float("-inf")


# -- writes (called by ``_commands.load_prices`` / ``unload_prices`` inside their transaction) -----------------

#: Arbitrary constant naming the advisory lock that serialises price-file writes on PostgreSQL.
_WRITE_LOCK = 0x50524943  # "PRIC"


def lock_for_write(conn: Connection) -> None:
    """One price-file write at a time across replicas (SQLite's single writer needs nothing)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _WRITE_LOCK})


def store_file(conn: Connection, loaded: Loaded, content: str) -> None:
    """Insert (or replace) a loaded file; it goes last, so its entries win over every earlier file's."""
    conn.execute(delete(price_files).where(price_files.c.name == loaded.name))
    seq = int(conn.execute(select(func.coalesce(func.max(price_files.c.seq), 0))).scalar() or 0) + 1
    conn.execute(price_files.insert().values(name=loaded.name, seq=seq, content=content, sha256=loaded.sha256,
                                             loaded_at=loaded.loaded_at, loaded_by=loaded.loaded_by))


def delete_file(conn: Connection, name: str) -> bool:
    return bool(conn.execute(delete(price_files).where(price_files.c.name == name)).rowcount)


__all__ = ["GatewayPrices", "Loaded", "Snapshot", "build", "dearest_rates", "delete_file", "effective", "lock_for_write",
           "parse_stored", "store_file"]
