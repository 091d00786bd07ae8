"""The pricing engine: reads the versioned price table in ``pricing/`` and prices a :class:`Usage`.

Contract used by the client (implemented in ``_table.py``):

* ``table() -> PriceTable``: the process-wide table (bundled files, then the
  ``AXME_METER_PRICES`` file, then ``configure(extra_prices=...)``), loaded lazily.
* ``PriceTable.quote(model, usage, *, at=None, service_tier=None, batch=False) -> Quote``:
  integer pico-dollars, a breakdown per dimension, ``priced`` / ``estimated`` / ``reason``.
* ``PriceTable.resolve(model) -> str | None`` and ``PriceTable.version``.

* ``install_gateway_table(files, version)`` / ``forget_gateway_table()``: price with the gateway's
  table (fetched by the sender, ``_transport/_prices.py``) under the user's own overrides.

Any other holder of token counts (e.g. a gateway pricing heartbeat details) prices them the
same way: ``PriceTable([*bundled_files(), parse_bytes(data, "upload.toml")]).quote(model,
Usage(...), at=..., service_tier=...)``. Later files replace earlier entries by id.
"""

from ._load import ModelEntry, PriceFileError, parse_bytes
from ._table import (
    PriceTable, Quote, bundled_files, forget_gateway_table, gateway_version, install_gateway_table, reload_table, table,
)
from ._usage import Usage

__all__ = [
    "ModelEntry", "PriceFileError", "PriceTable", "Quote", "Usage",
    "bundled_files", "forget_gateway_table", "gateway_version", "install_gateway_table", "parse_bytes", "reload_table", "table",
]
