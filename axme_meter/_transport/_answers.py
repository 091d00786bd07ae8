"""How a heartbeat answer is read: act on each entry, split the request, fix the key, or try again later.

Shared by the sender and ``axme-meter spool resend``, so both treat the gateway the same way.

* ``ACCEPTED``: 2xx, or a 403/429 that still carries per-entry ``results`` (the gateway
  recorded what it could and reports a block): act on each entry's result.
* ``SPLIT``: the request as a whole was refused (400, 403, 413 or 422 without ``results``,
  and not a budget block). One entry may be the cause: send the halves separately, and a
  lone entry refused this way is quarantined. Nothing waits behind it.
* ``UNAUTHORIZED``: 401, the key is unknown or revoked. Everything is kept; retried slowly.
* ``RETRY``: 5xx, a rate limit, a block without results, anything else. Everything is kept.
"""

from __future__ import annotations

from ._gateway_http import Answer
from ._quarantine import Refusal
from .._protocol import parse_error, parse_results

ACCEPTED, SPLIT, UNAUTHORIZED, RETRY = "accepted", "split", "unauthorized", "retry"
_WHOLE_REFUSALS = (400, 403, 413, 422)


def classify(answer: Answer) -> str:
    status = answer.status
    has_results = parse_results(answer.body) is not None
    if 200 <= status < 300 or (status in (403, 429) and has_results):
        return ACCEPTED
    if status == 401:
        return UNAUTHORIZED
    error = parse_error(answer.body)
    if status in _WHOLE_REFUSALS and not has_results and not (error is not None and error.is_block):
        return SPLIT
    return RETRY


def refusal(answer: Answer) -> Refusal:
    """Why a lone entry was refused as a whole request (for its quarantine record)."""
    error = parse_error(answer.body)
    code = error.code if error is not None and error.code else f"http_{answer.status}"
    return Refusal(code, describe(answer), answer.status)


def describe(answer: Answer) -> str:
    error = parse_error(answer.body)
    if error is not None:
        return f"{error.code}: {error.message}"[:300]
    return str(answer.body)[:300] if answer.body is not None else "no body"


__all__ = ["ACCEPTED", "RETRY", "SPLIT", "UNAUTHORIZED", "classify", "describe", "refusal"]
