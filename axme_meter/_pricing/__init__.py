"""The pricing engine: reads the versioned price table in ``pricing/`` and prices a :class:`Usage`.

Contract used by the client (implemented in ``_table.py``):

* ``table() -> PriceTable``: the process-wide table (bundled files, then the
  ``AXME_METER_PRICES`` file, then ``configure(extra_prices=...)``), loaded lazily.
* ``PriceTable.quote(model, usage, *, at=None, service_tier=None, batch=False) -> Quote``
* ``PriceTable.resolve(model) -> str | None`` and ``PriceTable.version``.
"""

from ._usage import Usage
from ._table import PriceTable, Quote, reload_table, table

__all__ = ["PriceTable", "Quote", "Usage", "reload_table", "table"]
