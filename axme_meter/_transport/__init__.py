"""Carry the in-process meter to the AXME gateway, and the gateway's budget answers back.

``_sender`` (the background heartbeat thread and intent registration), ``_spool``
(unsent entries on disk), ``_entries`` (heartbeat entries) and ``_gateway_http``
(URL policy, auth header, timeouts). The process's :class:`axme_meter._runtime.Runtime`
owns the one sender; nothing here runs at import.
"""
