"""What one API call consumed, in the units OpenAI bills.

Subsets are explicit so that nothing is billed twice: ``cached_tokens``,
``cache_write_tokens``, ``audio_input_tokens`` and ``image_input_tokens`` are
parts of ``input_tokens``; ``reasoning_tokens``, ``audio_output_tokens`` and
``image_output_tokens`` are parts of ``output_tokens``.

OpenAI's cached count covers every modality, so cached audio (and image) tokens
sit in two subsets at once: ``cached_audio_tokens`` is part of both
``cached_tokens`` and ``audio_input_tokens`` (likewise ``cached_image_tokens``).
The engine bills each token once, at the rate of its most specific set.

This is a plain record so that anything holding token counts (the client, or a
gateway pricing a heartbeat's per-model details) can build one and call
``PriceTable.quote``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    #: Part of ``cache_write_tokens`` written with the long (12 h) TTL, where the API reports it.
    cache_write_12h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    image_input_tokens: int = 0
    image_output_tokens: int = 0
    #: Cached audio / image tokens, where the API splits the cached count (Realtime does).
    #: When it does not, the engine infers the overlap from the totals (see ``_table``).
    cached_audio_tokens: int = 0
    cached_image_tokens: int = 0
    #: Per-unit quantities for endpoints not billed by the token.
    images: int = 0
    image_size: str | None = None
    image_quality: str | None = None
    audio_seconds: float = 0.0
    characters: int = 0

    def is_empty(self) -> bool:
        return not (
            self.input_tokens
            or self.output_tokens
            or self.images
            or self.audio_seconds
            or self.characters
        )
