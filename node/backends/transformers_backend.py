"""The real backend: torch + transformers, generation on worker threads.

CUDA with bf16 when a GPU is present, CPU float32 otherwise. Each model gets its own
thread pool (one thread per run slot) so the event loop stays free for /health and
refusals while tokens are generated. Token ids flow back through a streamer into an
asyncio queue; a StoppingCriteria watching a cancel flag ends generation as soon as the
client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from node.backends.base import Backend, GenerationStats, Prompt, PromptTooLong
from node.openai_schema import SamplingParams

log = logging.getLogger(__name__)

_END = object()
# from_pretrained is not thread-safe: transformers toggles process-global state (weight
# init switches, default dtype) while loading, and two concurrent loads were seen to
# leave a model with garbage weights. Loads are CPU-bound anyway, so run them one by one.
_LOAD_LOCK = threading.Lock()


def cpu_threads() -> int:
    """torch intra-op threads on CPU: all cores but one, which stays free for the event loop.

    OpenMP workers spin at barriers, so a busy extra thread (the event loop writing SSE,
    a client, a neighbour) stalls every token; measured here on 2 shared cores, 1 thread
    gave 6-10 tok/s where 2 gave 2-4. ``FLEET_TORCH_THREADS`` overrides.
    """
    env = os.environ.get("FLEET_TORCH_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (os.cpu_count() or 2) - 1)


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is available")
    return requested


class _QueueStreamer:
    """transformers streamer: decodes new tokens on the worker thread and hands text
    pieces to the event loop. The first ``put`` is the prompt and is skipped."""

    def __init__(self, tokenizer: Any, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]):
        self.tokenizer = tokenizer
        self.loop = loop
        self.queue = queue
        self.ids: list[int] = []
        self.emitted = ""
        self._prompt_seen = False

    def _send(self, item: Any) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        new = value.reshape(-1).tolist()
        self.ids.extend(new)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a multi-byte character is still incomplete
            self._send((len(new), ""))
            return
        piece, self.emitted = text[len(self.emitted) :], text
        self._send((len(new), piece))

    def end(self) -> None:
        self._send(_END)

    def fail(self, exc: BaseException) -> None:
        self._send(exc)


class TransformersBackend(Backend):
    kind = "transformers"

    def __init__(self, model_id: str, source: Path, *, device: str = "auto", workers: int = 1):
        self.model_id = model_id
        self.source = source
        self.requested_device = device
        self.device = "cpu"
        self.workers = max(1, workers)
        self.model: Any = None
        self.tokenizer: Any = None
        self.context_len = 2048
        self.eos_ids: set[int] = set()
        self._pool: ThreadPoolExecutor | None = None
        self.load_seconds: float | None = None

    async def load(self) -> None:
        # A daemon thread, not the default executor: a SIGTERM during a 15 s load must
        # not wait for it to finish before the process can exit.
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle(exc: BaseException | None) -> None:
            if done.done():
                return
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)

        def work() -> None:
            error: BaseException | None = None
            try:
                with _LOAD_LOCK:
                    self._load_sync()
            except BaseException as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop may be gone at shutdown
                loop.call_soon_threadsafe(settle, error)

        threading.Thread(target=work, name=f"load-{self.model_id}", daemon=True).start()
        await done
        self._pool = ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix=f"gen-{self.model_id}"
        )

    def _load_sync(self) -> None:
        started = time.monotonic()
        source = self.source
        # Check the cheap things before paying for the torch import.
        if source.suffix == ".gguf":
            if not source.is_file():
                raise FileNotFoundError(f"GGUF file {source} does not exist")
        elif not (source / "config.json").is_file():
            raise FileNotFoundError(
                f"{source} is not a Hugging Face model directory (no config.json)"
            )
        fields: dict[str, Any] = {"model": self.model_id, "source": str(self.source)}
        log.info("loading stage: importing torch", extra={"fields": fields})
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from node.embedded import dequantized_dir

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        if source.suffix == ".gguf":
            log.info("loading stage: gguf", extra={"fields": fields})
            source = dequantized_dir(source)
        self.device = pick_device(self.requested_device)
        if self.device == "cpu":
            torch.set_num_threads(cpu_threads())
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        log.info("loading stage: tokenizer", extra={"fields": {**fields, "device": self.device}})
        tokenizer = AutoTokenizer.from_pretrained(source)
        log.info("loading stage: weights", extra={"fields": {**fields, "dtype": str(dtype)}})
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
        model = model.to(self.device)  # type: ignore[arg-type]
        model.eval()
        self.context_len = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.tokenizer, self.model = tokenizer, model
        self.load_seconds = time.monotonic() - started
        log.info(
            "loading stage: ready",
            extra={"fields": {**fields, "seconds": round(self.load_seconds, 2)}},
        )

    def _check_len(self, ids: list[int]) -> Prompt:
        if len(ids) >= self.context_len:
            raise PromptTooLong(
                f"the prompt has {len(ids)} tokens; this model's context is {self.context_len}"
            )
        return Prompt(text="", token_ids=ids, n_tokens=len(ids))

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> Prompt:
        if self.tokenizer.chat_template:
            out = self.tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, tokenize=True, return_dict=True
            )
            ids = list(out["input_ids"])
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
            ids = list(self.tokenizer(text)["input_ids"])
        return self._check_len(ids)

    def encode_text(self, text: str) -> Prompt:
        return self._check_len(list(self.tokenizer(text)["input_ids"]))

    def _generate_sync(
        self, prompt: Prompt, params: SamplingParams, streamer: _QueueStreamer, cancel: Any
    ) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full(
                    (input_ids.shape[0],),
                    cancel.is_set(),
                    dtype=torch.bool,
                    device=input_ids.device,
                )

        try:
            if cancel.is_set():
                streamer.end()
                return
            input_ids = torch.tensor([prompt.token_ids], device=self.device)
            room = max(1, self.context_len - prompt.n_tokens)
            kwargs: dict[str, Any] = {
                "max_new_tokens": min(params.max_tokens, room),
                "streamer": streamer,
                "stopping_criteria": StoppingCriteriaList([_Cancelled()]),
                "attention_mask": torch.ones_like(input_ids),
                "pad_token_id": self.tokenizer.pad_token_id
                if self.tokenizer.pad_token_id is not None
                else next(iter(self.eos_ids), 0),
            }
            if params.greedy:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            else:
                kwargs.update(
                    do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0
                )
                if params.seed is not None:
                    torch.manual_seed(params.seed)
            with torch.inference_mode():
                self.model.generate(input_ids, **kwargs)
            streamer.end()
        except BaseException as exc:
            streamer.fail(exc)

    async def generate(
        self, prompt: Prompt, params: SamplingParams, stats: GenerationStats
    ) -> AsyncIterator[str]:
        if self._pool is None:
            raise RuntimeError("model not loaded")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        streamer = _QueueStreamer(self.tokenizer, loop, queue)
        cancel = threading.Event()
        future = loop.run_in_executor(
            self._pool, self._generate_sync, prompt, params, streamer, cancel
        )
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise RuntimeError(f"generation failed: {item}") from item
                count, piece = item
                stats.completion_tokens += count
                if piece:
                    yield piece
            last = streamer.ids[-1] if streamer.ids else None
            limit = min(params.max_tokens, max(1, self.context_len - prompt.n_tokens))
            hit_eos = last in self.eos_ids
            stats.finish_reason = "stop" if hit_eos or stats.completion_tokens < limit else "length"
            if hit_eos:
                stats.completion_tokens = len(streamer.ids)
        finally:
            # Client gone or stop string hit: the thread stops at the next token. The
            # permit is held until it has, so /health never shows a slot as free while
            # the CPU is still busy with it.
            cancel.set()
            with contextlib.suppress(Exception):
                await asyncio.shield(future)

    def describe(self) -> dict[str, Any]:
        return {"device": self.device}

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
