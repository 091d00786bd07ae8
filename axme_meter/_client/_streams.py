"""Metered stream classes: real subclasses of the SDK's own ``Stream`` / ``AsyncStream``.

A proxy object would break ``isinstance``, the ``.stream()`` helpers and
``aclose()``; a subclass keeps all of them. The subclass is made once per SDK
stream class (``Stream[ChatCompletionChunk]``, ...) and cached. It finishes the
call exactly once however the stream ends: exhausted, ``break``, ``close()``, an
exception, or garbage collection; and it hides the usage-only chunk that was
injected with ``include_usage`` so ``chunk.choices[0]`` keeps working.
"""

from __future__ import annotations

import types
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

from openai import AsyncStream, Stream

from ._call import EXTENSION_KEY, MeteredCall

_cache: dict[Any, type] = {}


def _call_of(response: Any) -> MeteredCall | None:
    try:
        call = response.request.extensions.get(EXTENSION_KEY)
    except Exception:
        return None
    return call if isinstance(call, MeteredCall) else None


def _is_injected_usage_chunk(call: MeteredCall, item: Any) -> bool:
    return call.injected_usage and getattr(item, "usage", None) is not None and not getattr(item, "choices", True)


def _attach(stream: Any, call: MeteredCall | None) -> None:
    stream._axme_call = call
    if call is not None:
        call.attached = True
        weakref.finalize(stream, call.finish)


def _sync_methods() -> dict[str, Any]:
    def __init__(self: Any, **kwargs: Any) -> None:
        super(cls_ref[0], self).__init__(**kwargs)
        _attach(self, _call_of(self.response))

    def __stream__(self: Any) -> Iterator[Any]:
        call: MeteredCall | None = self._axme_call
        if call is None:
            yield from super(cls_ref[0], self).__stream__()
            return
        try:
            for item in super(cls_ref[0], self).__stream__():
                if _is_injected_usage_chunk(call, item):
                    continue
                yield item
        finally:
            call.finish()

    def close(self: Any) -> None:
        try:
            super(cls_ref[0], self).close()
        finally:
            if self._axme_call is not None:
                self._axme_call.finish()

    cls_ref: list[type] = []
    return {"__init__": __init__, "__stream__": __stream__, "close": close, "_cls_ref": cls_ref}


def _async_methods() -> dict[str, Any]:
    def __init__(self: Any, **kwargs: Any) -> None:
        super(cls_ref[0], self).__init__(**kwargs)
        _attach(self, _call_of(self.response))

    async def __stream__(self: Any) -> AsyncIterator[Any]:
        call: MeteredCall | None = self._axme_call
        inner = super(cls_ref[0], self).__stream__()
        try:
            async for item in inner:
                if call is not None and _is_injected_usage_chunk(call, item):
                    continue
                yield item
        finally:
            if call is not None:
                call.finish()

    async def close(self: Any) -> None:
        try:
            await super(cls_ref[0], self).close()
        finally:
            if self._axme_call is not None:
                self._axme_call.finish()

    cls_ref: list[type] = []
    return {"__init__": __init__, "__stream__": __stream__, "close": close, "_cls_ref": cls_ref}


def metered_stream_class(stream_cls: Any) -> Any:
    """The metered subclass of ``stream_cls`` (a class or a ``Stream[T]`` alias)."""
    cached = _cache.get(stream_cls)
    if cached is not None:
        return cached
    origin = getattr(stream_cls, "__origin__", stream_cls)
    if not isinstance(origin, type) or not issubclass(origin, (Stream, AsyncStream)):
        return stream_cls  # not an SSE stream class we know how to meter
    namespace = _async_methods() if issubclass(origin, AsyncStream) else _sync_methods()
    cls_ref = namespace.pop("_cls_ref")
    # types.new_class resolves the ``Stream[T]`` alias and records it in __orig_bases__,
    # which is how the SDK recovers the chunk type ``T`` from a subclass.
    cls = types.new_class(f"Metered{origin.__name__}", (stream_cls,), exec_body=lambda ns: ns.update(namespace))
    cls.__module__ = __name__
    cls_ref.append(cls)
    _cache[stream_cls] = cls
    return cls
