"""The client's end of the fleet's price channel: fetch ``GET /v1/prices`` in the background and install it.

Why a thread of its own: the table is tens of kilobytes of TOML to fetch and parse, and neither
a caller's thread (the hot path of a call) nor the heartbeat thread (its checkpoints bound what a
SIGKILL can lose) may wait for that. One fetch runs at a time.

When it fetches: once when the sender starts (:meth:`PriceChannel.fetch_once`), and whenever a
heartbeat answer carries a ``pricing_version`` other than the installed one
(:meth:`PriceChannel.on_answer`), with ``If-None-Match`` so an unchanged table costs a ``304``.
A failed fetch is tried again at the next answer that announces a version; a table that does not
parse (or does not add up to its version) is not installed, and that version is not fetched again.
A gateway without the endpoint (``404``/``405``/``501``: AXME Cloud, an older gateway) leaves the
bundled table in place.

What gets installed: ``_pricing.install_gateway_table`` (the user's own price file and
``extra_prices`` keep winning). Then ``on_change`` runs, so the sender closes the entries that hold
spend priced with the old table.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .._pricing import PriceFileError
from ._gateway_http import GatewayHTTP, GatewayUnreachable

log = logging.getLogger("axme_meter")

#: ``GET /v1/prices`` runs on a background thread of its own; the table is ~50 kB.
PRICES_TIMEOUT = 10.0
_NO_ENDPOINT = (404, 405, 501)


class PriceChannel:
    """Fetches and installs the gateway's price table for this process; never blocks a caller."""

    def __init__(self, client: Callable[[], GatewayHTTP], stopping: Callable[[], bool], on_change: Callable[[], None]) -> None:
        self._http = client
        self._stopping = stopping
        self._on_change = on_change
        self._lock = threading.Lock()
        self._busy = False
        self._started = False
        self._warned: set[str] = set()
        #: A version that could not be used (it did not parse, or the gateway does not serve it): not fetched again.
        self._bad: str | None = None
        #: The version the last answer announced.
        self._announced: str | None = None
        #: The gateway has said it knows prices (an answer carried ``pricing_version``, or ``/v1/prices`` answered):
        #: it accepts the per-model token details in entries.
        self.details_ok = False
        #: Requests made (tests, status).
        self.fetches = 0

    @property
    def version(self) -> str | None:
        """The gateway's ``pricing_version`` this process prices with (``None``: its bundled table).

        Process-wide: a fork child's sender, or one rebuilt for the same gateway, starts from it."""
        from .._pricing import gateway_version

        return gateway_version()

    def fetch_once(self) -> None:
        """The fetch at start; later calls do nothing (answers trigger the others)."""
        if not self._started:
            self._started = True
            self._spawn()

    def on_answer(self, body: Any) -> None:
        """A heartbeat answer: fetch when it announces a table other than ours."""
        version = body.get("pricing_version") if isinstance(body, dict) else None
        if not isinstance(version, str):
            return
        self.details_ok = True
        self._announced = version
        if version != self.version and version != self._bad:
            self._spawn()

    def _spawn(self) -> None:
        if self._stopping():
            return
        with self._lock:
            if self._busy:
                return
            self._busy = True
        try:
            threading.Thread(target=self._run, name="axme-meter-prices", daemon=True).start()
        except RuntimeError:  # interpreter shutting down
            self._busy = False

    def _run(self) -> None:
        try:
            self._fetch()
        except Exception:  # a background helper must never die loudly; the next answer retries
            log.exception("axme_meter: fetching the gateway's price table failed")
        finally:
            self._busy = False

    def _fetch(self) -> None:
        headers = {"If-None-Match": f'"{self.version}"'} if self.version else None
        try:
            answer = self._http().get("/v1/prices", headers=headers, timeout=PRICES_TIMEOUT)
        except GatewayUnreachable as exc:
            log.debug("axme_meter: price table not fetched (%s); trying again with a later heartbeat", exc)
            return
        self.fetches += 1
        if answer.status == 304:
            self.details_ok = True
            return
        if answer.status in _NO_ENDPOINT:
            self._bad = self._announced  # announced but not served: don't ask again until another version
            log.debug("axme_meter: the gateway serves no price table (HTTP %s); pricing with the bundled one", answer.status)
            return
        if answer.status != 200:
            self._warn_once(f"http{answer.status}", f"axme_meter: the gateway answered HTTP {answer.status} for its price "
                            "table; pricing with the current table and trying again with a later heartbeat")
            return
        self.details_ok = True
        self._install(answer.body)

    def _install(self, body: Any) -> None:
        from .._pricing import install_gateway_table
        from .._pricing._wire import files_from_wire

        claimed = body.get("pricing_version") if isinstance(body, dict) else None
        try:
            version, files = files_from_wire(body)
        except PriceFileError as exc:
            self._bad = claimed if isinstance(claimed, str) else None
            self._warn_once(f"bad:{claimed}", f"axme_meter: the gateway's price table {claimed} cannot be used ({exc}); "
                            "pricing with the current table")
            return
        if version == self.version or self._stopping():
            return
        try:
            install_gateway_table(files, version)
        except PriceFileError as exc:  # the user's own price file (AXME_METER_PRICES) is broken
            self._warn_once(f"own:{version}", f"axme_meter: cannot install the gateway's price table: {exc}")
            return
        log.info("axme_meter: pricing with the gateway's price table %s", version)
        self._on_change()

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)


__all__ = ["PRICES_TIMEOUT", "PriceChannel"]
