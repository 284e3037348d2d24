"""What every backend offers the HTTP layer: load, encode a prompt, stream text pieces."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from node.openai_schema import SamplingParams


@dataclass
class Prompt:
    """An encoded prompt: its token count is what ``usage.prompt_tokens`` reports."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    n_tokens: int = 0


@dataclass
class GenerationStats:
    """Filled in by the backend while it streams."""

    completion_tokens: int = 0
    finish_reason: str = "length"
    # Seconds from the start of generation (prefill included) to its end; set by
    # node.generation.stream_text, it feeds the decode-speed estimate.
    generation_s: float = 0.0


class PromptTooLong(ValueError):
    """The prompt does not fit the model's context; answered as a 400."""


class Backend(ABC):
    """One loaded model. ``generate`` must stop work promptly when its iterator is closed
    (client disconnect) — that is how no CPU is spent on a gone client."""

    kind: str = "base"

    @abstractmethod
    async def load(self) -> None:
        """Make the model ready; raise with a clear message if it cannot be."""

    @abstractmethod
    def encode_chat(self, messages: Sequence[dict[str, str]]) -> Prompt: ...

    @abstractmethod
    def encode_text(self, text: str) -> Prompt: ...

    @abstractmethod
    def generate(
        self, prompt: Prompt, params: SamplingParams, stats: GenerationStats
    ) -> AsyncIterator[str]:
        """Text pieces as they are produced; updates ``stats`` as it goes."""

    def describe(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Free threads and memory at shutdown."""
