"""Carry the in-process meter to the AXME gateway, and the gateway's budget answers back.

``_sender`` (the background heartbeat thread and intent registration), ``_entries``
(heartbeat entries), ``_answers`` (how an answer is read: per entry, split, 401, retry),
``_spool`` (unsent entries on disk, per gateway URL and key), ``_quarantine`` (entries
the gateway refused for good, with the reason), ``_block_reports`` (agents this process
stopped on its own, told to the gateway), ``_prices`` (the gateway's price table, fetched
in the background and installed), ``_flush_result`` (what ``flush()`` returns) and
``_gateway_http`` (URL policy, auth header, timeouts). The process's
:class:`axme_meter._runtime.Runtime` owns the one sender; nothing here runs at import.
"""
