"""The self-hosted AXME-compatible gateway: heartbeat ingest, window counters, cost policies, enforcement, alerts.

Install with ``pip install "axme_meter[gateway]"`` and run ``axme-meter gateway``.
``create_app(Settings(...))`` builds the ASGI app; ``_queries`` is the read API
shared with the dashboard.
"""

from __future__ import annotations

from ._app import create_app
from ._config import Settings

__all__ = ["Settings", "create_app"]
