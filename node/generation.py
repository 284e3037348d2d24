"""Backend text streams with stop sequences applied, and the OpenAI response shapes."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from node.backends.base import Backend, GenerationStats, Prompt
from node.openai_schema import SamplingParams
from node.stops import StopMatcher


async def stream_text(
    backend: Backend, prompt: Prompt, params: SamplingParams, stats: GenerationStats
) -> AsyncGenerator[str, None]:
    """The backend's pieces, cut at the first stop string; closing this closes the backend
    stream, which stops generation. Sets ``stats.generation_s`` when it ends."""
    matcher = StopMatcher(params.stop)
    gen = backend.generate(prompt, params, stats)
    started = time.monotonic()
    try:
        async for piece in gen:
            out = matcher.feed(piece)
            if out:
                yield out
            if matcher.stopped:
                stats.finish_reason = "stop"
                return
        tail = matcher.flush()
        if tail:
            yield tail
    finally:
        await gen.aclose()  # type: ignore[attr-defined]
        stats.generation_s = time.monotonic() - started


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class ResponseIds:
    """One id and timestamp shared by every chunk of a response."""

    def __init__(self, prefix: str, model: str, backend: str) -> None:
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = model
        self.fingerprint = f"fleet-{backend}"

    def base(self, obj: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
        }


def chat_completion(
    ids: ResponseIds, text: str, stats: GenerationStats, prompt_tokens: int
) -> dict[str, Any]:
    return {
        **ids.base("chat.completion"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": stats.finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, stats.completion_tokens),
    }


def chat_chunk(
    ids: ResponseIds, delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    return {
        **ids.base("chat.completion.chunk"),
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def completion(
    ids: ResponseIds, text: str, stats: GenerationStats, prompt_tokens: int
) -> dict[str, Any]:
    return {
        **ids.base("text_completion"),
        "choices": [
            {"index": 0, "text": text, "logprobs": None, "finish_reason": stats.finish_reason}
        ],
        "usage": usage(prompt_tokens, stats.completion_tokens),
    }


def completion_chunk(
    ids: ResponseIds, text: str, finish_reason: str | None = None
) -> dict[str, Any]:
    return {
        **ids.base("text_completion"),
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(
    ids: ResponseIds, obj: str, stats: GenerationStats, prompt_tokens: int
) -> dict[str, Any]:
    return {**ids.base(obj), "choices": [], "usage": usage(prompt_tokens, stats.completion_tokens)}
