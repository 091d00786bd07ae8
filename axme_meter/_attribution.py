"""Who is spending: the agent and intent scopes, carried by contextvars.

Context variables follow asyncio tasks automatically. Threads do not inherit
them, which is why :func:`bind` exists: wrap a function before handing it to a
thread pool and it runs under the agent and intent that were current when it
was wrapped.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import re
import secrets
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

ADDRESS_FORM = "agent://org/env/name"
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}"
_ADDRESS = re.compile(rf"agent://{_SEGMENT}(?:/{_SEGMENT}){{1,2}}")
LOCAL_DEFAULT_AGENT = "agent://local/default"

_agent: contextvars.ContextVar[str | None] = contextvars.ContextVar("axme_meter_agent", default=None)
_intent: contextvars.ContextVar[str | None] = contextvars.ContextVar("axme_meter_intent", default=None)
_default_agent: str | None = None


class InvalidAgentAddress(ValueError):
    """An agent address is not of the form ``agent://org/env/name``."""


def validate_address(address: object) -> str:
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise InvalidAgentAddress(
            f"invalid agent address {address!r}: expected {ADDRESS_FORM!r} (or 'agent://org/name'), "
            "for example 'agent://myorg/production/research-agent'; segments may use letters, digits, '.', '_', '~' and '-'"
        )
    return address


def default_agent() -> str:
    """The agent used outside any :func:`agent` scope: ``AXME_AGENT``, else ``agent://local/default``."""
    global _default_agent
    if _default_agent is None:
        env = os.environ.get("AXME_AGENT")
        _default_agent = validate_address(env) if env else LOCAL_DEFAULT_AGENT
    return _default_agent


def set_default_agent(address: str | None) -> None:
    """Used by ``configure(agent=...)``; ``None`` re-reads ``AXME_AGENT`` on next use."""
    global _default_agent
    _default_agent = validate_address(address) if address is not None else None


def current_agent() -> str:
    return _agent.get() or default_agent()


def current_intent() -> str | None:
    return _intent.get()


def new_intent_id() -> str:
    return "int_" + secrets.token_hex(8)


class _Scope:
    """Shared machinery: a context manager (sync and async) that also decorates functions."""

    def __init__(self) -> None:
        self._tokens: list[tuple[contextvars.Token[Any], ...]] = []

    def _enter(self) -> tuple[contextvars.Token[Any], ...]:
        raise NotImplementedError

    async def _enter_async(self) -> tuple[contextvars.Token[Any], ...]:
        """``async with``: the same as :meth:`_enter` unless entering waits on I/O (see :class:`intent`)."""
        return self._enter()

    def _fresh(self) -> _Scope:
        """A new scope for one decorated call (decorators must not share tokens)."""
        return self

    def __enter__(self) -> _Scope:
        self._tokens.append(self._enter())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for token in reversed(self._tokens.pop()):
            token.var.reset(token)

    async def __aenter__(self) -> _Scope:
        self._tokens.append(await self._enter_async())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: F) -> F:
        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self._fresh():
                    async for item in fn(*args, **kwargs):
                        yield item

            return agen_wrapper  # type: ignore[return-value]
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self._fresh():
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._fresh():
                    return (yield from fn(*args, **kwargs))

            return gen_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class agent(_Scope):
    """Attribute the calls inside to an agent.

    Use as ``@axme_meter.agent("agent://myorg/production/research-agent")`` on a
    function (sync, async or generator) or as ``with axme_meter.agent(...):``.
    """

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = validate_address(address)

    def _enter(self) -> tuple[contextvars.Token[Any], ...]:
        return (_agent.set(self.address),)

    def _fresh(self) -> agent:
        return agent(self.address)


class intent(_Scope):
    """Scope an intent (one task): ``with axme_meter.intent("ticket-42", customer="acme"):``.

    With no id, one is minted (``int_`` + random) each time the scope is entered,
    so a decorated function gets a new intent per call. The innermost scope wins.
    When a gateway is configured, entering registers the intent there and raises
    :class:`axme_meter.BudgetExceeded` if the agent may not start new work.
    """

    def __init__(self, intent_id: str | None = None, **labels: str) -> None:
        super().__init__()
        if intent_id is not None:
            from ._protocol import intent_id_problem

            # the gateway refuses these too: fail here, not in a heartbeat
            problem = intent_id_problem(intent_id)
            if problem is not None:
                raise ValueError(f"intent_id {problem}, got {intent_id!r}")
        self._fixed_id = intent_id
        self.labels: dict[str, str] = {str(k): str(v) for k, v in labels.items()}
        self.intent_id: str | None = intent_id

    def _enter(self) -> tuple[contextvars.Token[Any], ...]:
        intent_id = self._fixed_id or new_intent_id()
        from . import _runtime  # lazy: the runtime imports settings, which import this module

        _runtime.default().register_intent(current_agent(), intent_id, self.labels)
        self.intent_id = intent_id
        return (_intent.set(intent_id),)

    async def _enter_async(self) -> tuple[contextvars.Token[Any], ...]:
        """Registration may wait on the gateway: in a thread, so the event loop keeps running."""
        intent_id = self._fixed_id or new_intent_id()
        from . import _runtime

        runtime = _runtime.default()
        if runtime.registers_intents:
            import asyncio  # lazily: only async scopes get here

            await asyncio.to_thread(runtime.register_intent, current_agent(), intent_id, self.labels)
        else:
            runtime.register_intent(current_agent(), intent_id, self.labels)
        self.intent_id = intent_id
        return (_intent.set(intent_id),)

    def _fresh(self) -> intent:
        return intent(self._fixed_id, **self.labels)


def bind(fn: F) -> F:
    """Freeze the current agent and intent into ``fn``, for thread pools and callbacks.

    ``executor.submit(axme_meter.bind(work), ticket)`` meters ``work`` under the
    caller's agent and intent, whichever thread runs it.
    """
    agent_value, intent_value = _agent.get(), _intent.get()

    @functools.wraps(fn)
    def bound(*args: Any, **kwargs: Any) -> Any:
        tokens = (_agent.set(agent_value), _intent.set(intent_value))
        try:
            return fn(*args, **kwargs)
        finally:
            for token in reversed(tokens):
                token.var.reset(token)

    return bound  # type: ignore[return-value]
