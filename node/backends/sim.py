"""The simulator: realistic timing without a model, for routing tests and benchmarks.

Prefill takes ``prompt_tokens / prefill_tps`` seconds, then one token every
``1 / decode_tps`` seconds, all with asyncio sleeps — no thread and no CPU burn, so many
sim nodes share two cores. Output text is a deterministic function of prompt and seed.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import AsyncIterator, Sequence

from node.backends.base import Backend, GenerationStats, Prompt
from node.openai_schema import SamplingParams

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_WORDS = [
    "the",
    "fleet",
    "routes",
    "each",
    "request",
    "to",
    "the",
    "least",
    "busy",
    "node",
    "while",
    "envoy",
    "keeps",
    "retries",
    "cheap",
    "and",
    "tokens",
    "flow",
    "back",
    "as",
    "a",
    "stream",
    "of",
    "small",
    "chunks",
]


def count_tokens(text: str) -> int:
    """A word/punctuation count: close enough to a tokenizer for timing purposes."""
    return len(_TOKEN_RE.findall(text))


class SimBackend(Backend):
    kind = "sim"

    def __init__(self, model_id: str, decode_tps: float = 50.0, prefill_tps: float = 2000.0):
        if decode_tps <= 0 or prefill_tps <= 0:
            raise ValueError("sim token rates must be > 0")
        self.model_id = model_id
        self.decode_tps = decode_tps
        self.prefill_tps = prefill_tps

    async def load(self) -> None:
        return None

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> Prompt:
        text = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages) + "<|assistant|>\n"
        return Prompt(text=text, n_tokens=count_tokens(text))

    def encode_text(self, text: str) -> Prompt:
        return Prompt(text=text, n_tokens=count_tokens(text))

    async def generate(
        self, prompt: Prompt, params: SamplingParams, stats: GenerationStats
    ) -> AsyncIterator[str]:
        digest = hashlib.sha256(f"{params.seed}\x00{prompt.text}".encode()).digest()
        rng = random.Random(digest)
        await asyncio.sleep(prompt.n_tokens / self.prefill_tps)
        step = 1.0 / self.decode_tps
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(params.max_tokens):
            # Pace against the start time so timer slack does not accumulate.
            await asyncio.sleep(max(0.0, start + (i + 1) * step - loop.time()))
            stats.completion_tokens += 1
            word = rng.choice(_WORDS)
            yield word if i == 0 else " " + word
        stats.finish_reason = "length"
