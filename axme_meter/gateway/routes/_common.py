"""Helpers every route uses: the gateway state, auth, size-capped JSON bodies, validation, block answers."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from .._auth import Principal
from .._errors import ApiError, bad_request, validation_error
from .._policies import AgentStatus, PolicyStatus, block_message, retry_after

if TYPE_CHECKING:
    from .._app import Gateway

M = TypeVar("M", bound=BaseModel)


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


def principal(request: Request) -> Principal:
    return gateway(request).keys.authenticate(request)


def agent_ref(request: Request) -> str:
    """The ``{address_id}`` path part: an ``addr_…`` id or a percent-encoded full address."""
    return unquote(request.path_params["address_id"])


async def read_json(request: Request, *, allow_empty: bool = False) -> Any:
    """The body as JSON, refusing more than the configured size before reading it all."""
    limit = gateway(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise bad_request(f"body larger than {limit} bytes", code="payload_too_large", status=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise bad_request(f"body larger than {limit} bytes", code="payload_too_large", status=413)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if allow_empty:
            return {}
        raise bad_request("empty body: expected a JSON object", code="invalid_json")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"malformed JSON: {str(exc)[:200]}", code="invalid_json") from None


def validate(model: type[M], data: Any, prefix: tuple[Any, ...] = ()) -> M:
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", "body must be a JSON object", {"field": "", "errors": []})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, prefix) from None
    except RecursionError:
        raise bad_request("body nested too deeply", code="invalid_json") from None


def block_error(status: AgentStatus, now: datetime, refusal: PolicyStatus | None = None) -> ApiError:
    """The 429/403 for an agent that may not proceed: budget_exceeded (with AXME's ``details``), paused or killed."""
    headers = {"x-should-retry": "false"}
    if status.state == "killed":
        return ApiError(403, "agent_killed", f"{status.address} was killed; an admin must resume it",
                        {"state": "killed"}, headers=headers, extra={"agent": status.address})
    p = refusal or status.breach
    if status.state == "paused" and (p is None or refusal is None):
        headers["Retry-After"] = "60"
        return ApiError(429, "agent_paused", f"{status.address} is paused; an admin must resume it",
                        {"state": "paused"}, headers=headers, extra={"agent": status.address})
    assert p is not None
    headers["Retry-After"] = str(retry_after(p, now))
    wire = p.to_wire()
    extra: dict[str, Any] = {"agent": status.address, "policy": p.name, "limit": wire["limit"], "spent": wire["spent"],
                             "resets_at": wire["resets_at"]}
    if p.intent_id is not None:
        extra["intent_id"] = p.intent_id
    details = {"dimension": p.name, "used": wire["spent"], "limit": wire["limit"], "reset_at": wire["resets_at"]}
    return ApiError(429, "budget_exceeded", block_message(status.address, p), details, headers=headers, extra=extra)


def ok(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)
