"""Drop-in metered clients: subclasses of the openai clients, changed at one chokepoint.

Every endpoint of openai 2.x and 3.x goes through ``request()`` (sync and async),
including ``.parse``, the ``.stream()`` helpers, ``with_raw_response`` and
``with_streaming_response``. Overriding it, plus two small hooks the SDK calls
for every request and every parsed body, meters all of them without adding a
parameter to any SDK method or a field to any request (except
``stream_options.include_usage`` where the caller left it unset).
"""

from __future__ import annotations

import contextvars
import weakref
from typing import Any

import openai
from openai._legacy_response import LegacyAPIResponse
from openai._response import BaseAPIResponse

from .. import _runtime
from ._call import EXTENSION_KEY, MeteredCall, begin, meter
from ._streams import _call_of, metered_stream_class

_current_call: contextvars.ContextVar[MeteredCall | None] = contextvars.ContextVar(
    "axme_meter_current_call", default=None
)


def _after_response(call: MeteredCall, result: Any, stream: bool) -> None:
    """Finish what can be finished now; defer the rest to the parse or to garbage collection."""
    if call.kind == "speech" and not stream:
        call.finish()  # billed on the request text; the binary body carries no usage
    elif isinstance(result, (BaseAPIResponse, LegacyAPIResponse)):
        # Raw response: usage arrives when the caller parses it. If it never does,
        # book what we know when the object goes away (unless a stream took over).
        weakref.finalize(result, _finish_unless_attached, call)
    elif not stream:
        call.finish()  # no JSON body was observed (plain text or binary): book as unpriced/free


def _finish_unless_attached(call: MeteredCall) -> None:
    if not call.attached:
        call.finish()


def _observe(response: Any, data: object) -> None:
    call = _call_of(response)
    if call is not None:
        try:
            call.observe(data)
        except Exception:
            meter.errors += 1


def _stamp(request: Any) -> None:
    call = _current_call.get()
    if call is not None:
        request.extensions[EXTENSION_KEY] = call


class _Metering:
    """What every metered client has: the process runtime it reports to, bound when it is built."""

    _axme_runtime: _runtime.Runtime

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._axme_runtime = _runtime.default()  # first client: the runtime is installed here, not at import
        super().__init__(*args, **kwargs)


class _SyncMetering(_Metering):
    """The overrides shared by ``OpenAI`` and ``AzureOpenAI``."""

    def request(  # type: ignore[override]
        self, cast_to: Any, options: Any, *, stream: bool = False, stream_cls: Any = None
    ) -> Any:
        call = begin(options, stream, getattr(self, "_azure_deployment", None), self._axme_runtime) if options.method == "post" else None
        if call is None:
            return super().request(cast_to, options, stream=stream, stream_cls=stream_cls)  # type: ignore[misc]
        call.admit()
        if stream and stream_cls is not None:  # only a streamed call ever builds a stream object
            stream_cls = metered_stream_class(stream_cls)
        token = _current_call.set(call)
        try:
            result = super().request(cast_to, options, stream=stream, stream_cls=stream_cls)  # type: ignore[misc]
        except BaseException:
            call.abandon()
            raise
        finally:
            _current_call.reset(token)
        _after_response(call, result, stream)
        return result

    def _prepare_request(self, request: Any) -> None:
        super()._prepare_request(request)  # type: ignore[misc]
        _stamp(request)

    def _process_response_data(self, *, data: object, cast_to: Any, response: Any) -> Any:
        result = super()._process_response_data(data=data, cast_to=cast_to, response=response)  # type: ignore[misc]
        _observe(response, data)
        return result


class _AsyncMetering(_Metering):
    """The overrides shared by ``AsyncOpenAI`` and ``AsyncAzureOpenAI``."""

    async def request(  # type: ignore[override]
        self, cast_to: Any, options: Any, *, stream: bool = False, stream_cls: Any = None
    ) -> Any:
        call = begin(options, stream, getattr(self, "_azure_deployment", None), self._axme_runtime) if options.method == "post" else None
        if call is None:
            return await super().request(cast_to, options, stream=stream, stream_cls=stream_cls)  # type: ignore[misc]
        await call.admit_async()
        if stream and stream_cls is not None:  # only a streamed call ever builds a stream object
            stream_cls = metered_stream_class(stream_cls)
        token = _current_call.set(call)
        try:
            result = await super().request(cast_to, options, stream=stream, stream_cls=stream_cls)  # type: ignore[misc]
        except BaseException:
            call.abandon()
            raise
        finally:
            _current_call.reset(token)
        _after_response(call, result, stream)
        return result

    async def _prepare_request(self, request: Any) -> None:
        await super()._prepare_request(request)  # type: ignore[misc]
        _stamp(request)

    def _process_response_data(self, *, data: object, cast_to: Any, response: Any) -> Any:
        result = super()._process_response_data(data=data, cast_to=cast_to, response=response)  # type: ignore[misc]
        _observe(response, data)
        return result


class OpenAI(_SyncMetering, openai.OpenAI):
    """``openai.OpenAI``, metered. Same constructor, same methods, same return types."""


class AsyncOpenAI(_AsyncMetering, openai.AsyncOpenAI):
    """``openai.AsyncOpenAI``, metered."""


class AzureOpenAI(_SyncMetering, openai.AzureOpenAI):
    """``openai.AzureOpenAI``, metered. Map deployments to models with ``configure(azure_deployments=...)``."""


class AsyncAzureOpenAI(_AsyncMetering, openai.AsyncAzureOpenAI):
    """``openai.AsyncAzureOpenAI``, metered."""
