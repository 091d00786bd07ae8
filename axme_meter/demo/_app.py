"""The simulator's Starlette app: ``/v1/chat/completions``, ``/v1/responses``, ``/v1/embeddings``.

Nothing here calls a model. Text is drawn from a fixed vocabulary of one-token
words, token counts come from the real encodings, and every shape (JSON bodies,
SSE chunks, the usage-only chunk, ``[DONE]``, Responses events) matches the real
API, so clients, SDKs and axme_meter's metering see what they would see in
production, only free, fast and offline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import zlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import _payloads as p
from ._config import SimulatorConfig, SimulatorState
from ._text import (
    chat_prompt_tokens,
    embedding_inputs,
    embedding_tokens,
    generate_words,
    responses_input_tokens,
)


class SimulatedCut(Exception):
    """Raised inside a stream body to drop the connection on purpose (``cut_mode="abort"``)."""


class _DropSimulatedCuts(logging.Filter):
    """uvicorn logs every exception escaping the app; a deliberate cut is not an error worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, SimulatedCut):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


_filter = _DropSimulatedCuts()
logging.getLogger("uvicorn.error").addFilter(_filter)


def _error(status: int, message: str, etype: str = "invalid_request_error", code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": etype, "param": None, "code": code}}, status_code=status)


def _header_int(request: Request, name: str) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


class _Call:
    """One request's plan: its RNG, model, token counts and text, decided before the first byte."""

    def __init__(self, state: SimulatorState, request: Request, body: dict[str, Any], rng: random.Random) -> None:
        config = state.config
        self.state = state
        self.body = body
        self.rng = rng
        self.model = p.snapshot(str(body.get("model")))
        self.latency = config.latency
        latency_ms = _header_int(request, "x-simulator-latency-ms")
        if latency_ms is not None:
            self.latency = max(0, latency_ms) / 1000
        self.cut_after = _header_int(request, "x-simulator-cut-after")
        if self.cut_after is None:
            self.cut_after = config.cut_after
        self.cut_mode = request.headers.get("x-simulator-cut-mode", config.cut_mode)

    def plan_text(self, request: Request, prompt_tokens: int, prompt_key: int, cap: Any) -> tuple[list[str], str]:
        config = self.state.config
        wanted = _header_int(request, "x-simulator-completion-tokens")
        if wanted is None:
            spec = config.completion_tokens
            wanted = spec if isinstance(spec, int) else self.rng.randint(spec[0], spec[1])
        reasoning = self.rng.randint(*config.reasoning_tokens) if p.is_reasoning(self.model) else 0
        finish = "stop"
        if isinstance(cap, int) and cap >= 0 and wanted + reasoning > cap:
            reasoning = min(reasoning, cap)
            wanted = cap - reasoning
            finish = "length"
        cached = self.state.cached_tokens(self.rng, prompt_key, prompt_tokens)
        self.tokens = p.Tokens(prompt=prompt_tokens, cached=cached, completion=wanted + reasoning, reasoning=reasoning)
        return generate_words(self.rng, wanted), finish

    def chunks(self, words: list[str]) -> list[str]:
        size = max(1, self.state.config.tokens_per_chunk)
        return ["".join(words[i : i + size]) for i in range(0, len(words), size)]

    def cut_here(self, sent_chunks: int) -> bool:
        return self.cut_after is not None and sent_chunks >= self.cut_after

    def billed_after(self, sent_chunks: int, words: int) -> int:
        """Completion tokens billed when a stream stops after ``sent_chunks`` chunks (reasoning was already spent)."""
        return min(words, sent_chunks * max(1, self.state.config.tokens_per_chunk)) + self.tokens.reasoning


def _sse(data: Any, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


async def _read_json(request: Request) -> dict[str, Any] | JSONResponse:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return _error(400, "We could not parse the JSON body of your request.")
    if not isinstance(body, dict):
        return _error(400, "The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _error(400, "you must provide a model parameter", code="missing_required_parameter")
    return body


def _preflight(state: SimulatorState, request: Request) -> JSONResponse | None:
    """Auth and injected failures, answered the way OpenAI answers them."""
    if state.config.require_auth and not request.headers.get("authorization", "").startswith("Bearer "):
        state.error()
        return _error(401, "You didn't provide an API key.", code="missing_api_key")
    status = _header_int(request, "x-simulator-status")
    if status is not None and status >= 400:
        state.error()
        etype = "rate_limit_error" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
        return _error(status, f"simulated HTTP {status} (x-simulator-status)", etype)
    return None


async def _open(request: Request, path: str) -> tuple[SimulatorState, random.Random, dict[str, Any]] | Response:
    """Every route's start: count the request, apply injected failures, read the JSON body."""
    state: SimulatorState = request.app.state.sim
    rng = state.begin(path)
    failed = _preflight(state, request)
    if failed is not None:
        return failed
    body = await _read_json(request)
    if isinstance(body, JSONResponse):
        return body
    return state, rng, body


async def chat_completions(request: Request) -> Response:
    opened = await _open(request, "/v1/chat/completions")
    if isinstance(opened, Response):
        return opened
    state, rng, body = opened
    if body.get("n", 1) not in (1, None):
        return _error(400, "the simulator answers n=1 only")
    call = _Call(state, request, body, rng)
    prompt_tokens = chat_prompt_tokens(body, call.model)
    key = zlib.crc32(json.dumps(body.get("messages"), sort_keys=True).encode())
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    words, finish = call.plan_text(request, prompt_tokens, key, cap)
    frame = p.ChatFrame(p.new_id(rng, "chatcmpl-"), p.now(), call.model, body.get("service_tier") or "default",
                        "fp_" + "%010x" % rng.getrandbits(40))
    if call.latency:
        await asyncio.sleep(call.latency)
    if not body.get("stream"):
        t = call.tokens
        state.bill(t.prompt, t.cached, t.completion)
        return JSONResponse(p.chat_completion(frame, "".join(words), finish, t))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return _stream(_chat_events(call, frame, words, finish, include_usage))


async def _chat_events(call: _Call, frame: p.ChatFrame, words: list[str], finish: str, usage: bool) -> AsyncIterator[bytes]:
    state, t = call.state, call.tokens
    interval = state.config.chunk_interval
    yield _sse(p.chat_chunk(frame, {"role": "assistant", "content": "", "refusal": None}, None, usage))
    for index, piece in enumerate(call.chunks(words)):
        if call.cut_here(index):
            async for part in _cut(call, t.prompt, t.cached, call.billed_after(index, len(words))):
                yield part
            return
        if interval:
            await asyncio.sleep(interval)
        yield _sse(p.chat_chunk(frame, {"content": piece}, None, usage))
    yield _sse(p.chat_chunk(frame, {}, finish, usage))
    state.bill(t.prompt, t.cached, t.completion, stream=True)
    if usage:
        yield _sse(p.chat_usage_chunk(frame, t))
    yield _sse("[DONE]")


async def _cut(call: _Call, prompt: int, cached: int, completion: int) -> AsyncIterator[bytes]:
    """End a stream early: bill what was sent, then drop the connection or just stop."""
    call.state.bill(prompt, cached, completion, stream=True, cut=True)
    if call.cut_mode == "abort":
        raise SimulatedCut(f"stream cut after {call.cut_after} chunks (x-simulator-cut-after)")
    return
    yield b""  # pragma: no cover - makes this an async generator


def _stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers={"cache-control": "no-cache"})


async def responses(request: Request) -> Response:
    opened = await _open(request, "/v1/responses")
    if isinstance(opened, Response):
        return opened
    state, rng, body = opened
    call = _Call(state, request, body, rng)
    prompt_tokens = responses_input_tokens(body, call.model)
    key = zlib.crc32(json.dumps([body.get("instructions"), body.get("input")], sort_keys=True).encode())
    words, finish = call.plan_text(request, prompt_tokens, key, body.get("max_output_tokens"))
    status = "completed" if finish == "stop" else "incomplete"
    rid, mid, created = p.new_id(rng, "resp_"), p.new_id(rng, "msg_"), p.now()
    if call.latency:
        await asyncio.sleep(call.latency)
    t = call.tokens
    if not body.get("stream"):
        state.bill(t.prompt, t.cached, t.completion)
        return JSONResponse(p.response_object(rid, mid, created, call.model, body, "".join(words), status, t))
    return _stream(_response_events(call, body, rid, mid, created, words, status))


async def _response_events(
    call: _Call, body: dict[str, Any], rid: str, mid: str, created: int, words: list[str], status: str
) -> AsyncIterator[bytes]:
    state, t, model = call.state, call.tokens, call.model
    seq = 0

    def event(kind: str, **fields: Any) -> bytes:
        nonlocal seq
        data = {"type": kind, "sequence_number": seq, **fields}
        seq += 1
        return _sse(data, kind)

    pending = p.response_object(rid, mid, created, model, body, None, "in_progress", None)
    yield event("response.created", response=pending)
    yield event("response.in_progress", response=pending)
    item = {"id": mid, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    yield event("response.output_item.added", output_index=0, item=item)
    empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    where = {"item_id": mid, "output_index": 0, "content_index": 0}
    yield event("response.content_part.added", **where, part=empty_part)
    for index, piece in enumerate(call.chunks(words)):
        if call.cut_here(index):
            async for part in _cut(call, t.prompt, t.cached, call.billed_after(index, len(words))):
                yield part
            return
        if state.config.chunk_interval:
            await asyncio.sleep(state.config.chunk_interval)
        yield event("response.output_text.delta", **where, delta=piece, logprobs=[])
    text = "".join(words)
    yield event("response.output_text.done", **where, text=text, logprobs=[])
    yield event("response.content_part.done", **where, part={**empty_part, "text": text})
    final = p.response_object(rid, mid, created, model, body, text, status, t)
    yield event("response.output_item.done", output_index=0, item=final["output"][0])
    state.bill(t.prompt, t.cached, t.completion, stream=True)
    yield event("response.completed" if status == "completed" else "response.incomplete", response=final)


async def embeddings(request: Request) -> Response:
    opened = await _open(request, "/v1/embeddings")
    if isinstance(opened, Response):
        return opened
    state, rng, body = opened
    model = str(body["model"])
    items = embedding_inputs(body.get("input"))
    if not items:
        return _error(400, "'input' must be a non-empty string or array")
    dimensions = body.get("dimensions") or p.EMBEDDING_DIMENSIONS.get(model, 1536)
    fmt = body.get("encoding_format") or "float"
    tokens = sum(embedding_tokens(item, model) for item in items)
    data = [
        {"object": "embedding", "index": i, "embedding": p.embedding_vector(rng, int(dimensions), fmt)}
        for i in range(len(items))
    ]
    if state.config.latency:
        await asyncio.sleep(state.config.latency)
    state.bill(tokens, 0, 0)
    return JSONResponse({"object": "list", "data": data, "model": model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


async def models(request: Request) -> Response:
    names = sorted({*p.SNAPSHOTS, *p.SNAPSHOTS.values(), *p.EMBEDDING_DIMENSIONS})
    return JSONResponse({"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "simulator"} for n in names]})


async def stats(request: Request) -> Response:
    return JSONResponse(request.app.state.sim.stats().as_dict())


def create_app(config: SimulatorConfig | None = None) -> Starlette:
    """Build the app; ``app.state.sim`` holds its :class:`SimulatorState` (config, counters, stats)."""
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/_simulator/stats", stats, methods=["GET"]),
        ]
    )
    app.state.sim = SimulatorState(config or SimulatorConfig())
    return app
