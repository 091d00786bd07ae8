"""What one API call consumed, in the units OpenAI bills.

Subsets are explicit so that nothing is billed twice: ``cached_tokens``,
``cache_write_tokens``, ``audio_input_tokens`` and ``image_input_tokens`` are
parts of ``input_tokens``; ``reasoning_tokens``, ``audio_output_tokens`` and
``image_output_tokens`` are parts of ``output_tokens``.
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
    #: Per-unit quantities for endpoints not billed by the token.
    images: int = 0
    image_size: str | None = None
    image_quality: str | None = None
    audio_seconds: float = 0.0
    characters: int = 0

    @property
    def text_input_tokens(self) -> int:
        """Input tokens billed at the plain text rates (no cache, audio or image part)."""
        return max(
            0,
            self.input_tokens
            - self.cached_tokens
            - self.cache_write_tokens
            - self.audio_input_tokens
            - self.image_input_tokens,
        )

    def is_empty(self) -> bool:
        return not (
            self.input_tokens
            or self.output_tokens
            or self.images
            or self.audio_seconds
            or self.characters
        )
