"""JSON error bodies: ``{"error": {"code", "message", "details"}}`` everywhere, never HTML.

``ApiError`` is raised by handlers; the app's exception handlers turn it (and
pydantic validation errors, and anything unexpected) into this one shape, so
clients can branch on ``error.code`` and tests can assert on it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse

from .._protocol import error_body


class ApiError(Exception):
    """An HTTP error with a machine-readable code; ``extra`` fields go next to code/message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details, **self.extra)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def field_path(loc: tuple[Any, ...]) -> str:
    """pydantic's ``loc`` tuple as ``heartbeats.0.metrics.cost_usd``."""
    return ".".join(str(part) for part in loc if part not in ("function-after", "function-before"))


def validation_error(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> ApiError:
    """A 422 naming every offending field (first one also in ``details.field``)."""
    errors = [
        {"field": field_path(prefix + tuple(err["loc"])), "message": err["msg"].removeprefix("Value error, "), "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    first = errors[0] if errors else {"field": "", "message": "invalid body"}
    return ApiError(
        422,
        "validation_error",
        f"{first['field'] or 'body'}: {first['message']}",
        {"field": first["field"], "errors": errors[:50]},
    )


def bad_request(message: str, *, code: str = "bad_request", status: int = 400, **details: Any) -> ApiError:
    return ApiError(status, code, message, details)


def not_found(what: str) -> ApiError:
    """404 for both "does not exist" and "belongs to another org", so nothing leaks."""
    return ApiError(404, "not_found", f"{what} not found")
