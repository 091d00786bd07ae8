"""Settings and counters of the simulated OpenAI endpoint."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Literal

CutMode = Literal["abort", "eof"]


@dataclass(slots=True)
class SimulatorConfig:
    """How the simulator answers. Per-request ``x-simulator-*`` headers override a few fields.

    * ``completion_tokens``: a fixed count, or an inclusive ``(low, high)`` range drawn per request
      (header ``x-simulator-completion-tokens``). ``max_tokens`` / ``max_completion_tokens`` /
      ``max_output_tokens`` cap it, with ``finish_reason="length"`` as OpenAI does.
    * ``cache_hit_rate``: OpenAI caches prompts of 1,024 tokens or more, in 128-token steps, once
      a prefix has been seen; a repeated long prompt is a cache hit with this probability.
    * ``latency``: seconds before the first byte (header ``x-simulator-latency-ms``);
      ``chunk_interval``: seconds between stream chunks.
    * ``cut_after``: cut every stream after that many content chunks (header
      ``x-simulator-cut-after``). ``cut_mode`` ``abort`` drops the connection mid-body (the client
      sees a transport error); ``eof`` ends the body cleanly with no usage and no ``[DONE]``.
    * ``seed``: with requests in the same order, every id, text and token count is reproducible.
    """

    seed: int = 0
    completion_tokens: int | tuple[int, int] = (120, 360)
    cache_hit_rate: float = 0.5
    reasoning_tokens: tuple[int, int] = (64, 512)
    latency: float = 0.0
    chunk_interval: float = 0.0
    tokens_per_chunk: int = 1
    cut_after: int | None = None
    cut_mode: CutMode = "abort"
    require_auth: bool = True


@dataclass(slots=True)
class SimulatorStats:
    """What the simulator served. ``billed_*`` is what OpenAI would bill: a cut stream bills what it sent."""

    requests: int = 0
    by_path: dict[str, int] = field(default_factory=dict)
    streams: int = 0
    cut_streams: int = 0
    errors: int = 0
    billed_prompt_tokens: int = 0
    billed_cached_tokens: int = 0
    billed_completion_tokens: int = 0

    def copy(self) -> SimulatorStats:
        return SimulatorStats(
            self.requests,
            dict(self.by_path),
            self.streams,
            self.cut_streams,
            self.errors,
            self.billed_prompt_tokens,
            self.billed_cached_tokens,
            self.billed_completion_tokens,
        )

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}


class SimulatorState:
    """Shared by every request: the request counter (seeds each request's RNG), the prompt cache, stats."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._counter = 0
        self._seen_prompts: set[int] = set()
        self._stats = SimulatorStats()

    def begin(self, path: str) -> random.Random:
        """Count a request and return its own RNG, derived from the seed and the request's ordinal."""
        with self._lock:
            self._counter += 1
            self._stats.requests += 1
            self._stats.by_path[path] = self._stats.by_path.get(path, 0) + 1
            return random.Random(f"{self.config.seed}:{self._counter}")

    def cached_tokens(self, rng: random.Random, prompt_key: int, prompt_tokens: int) -> int:
        """OpenAI-like prompt caching: only prompts >= 1,024 tokens, a seen prefix, 128-token steps."""
        with self._lock:
            seen = prompt_key in self._seen_prompts
            self._seen_prompts.add(prompt_key)
        if prompt_tokens < 1024 or not seen or rng.random() >= self.config.cache_hit_rate:
            return 0
        return 1024 + 128 * ((prompt_tokens - 1024) // 128)

    def bill(self, prompt: int, cached: int, completion: int, *, stream: bool = False, cut: bool = False) -> None:
        with self._lock:
            self._stats.billed_prompt_tokens += prompt
            self._stats.billed_cached_tokens += cached
            self._stats.billed_completion_tokens += completion
            self._stats.streams += stream
            self._stats.cut_streams += cut

    def error(self) -> None:
        with self._lock:
            self._stats.errors += 1

    def stats(self) -> SimulatorStats:
        with self._lock:
            return self._stats.copy()
