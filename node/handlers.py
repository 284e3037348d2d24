"""Tornado request handlers: parse, admit, stream. Thin — the logic lives in pure modules.

Every response carries ``x-fleet-node``; every error is an OpenAI envelope. Inference
runs as a task the handler can cancel when the client disconnects or the node shuts
down, which releases the admission permit and stops generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any

import tornado.web
from tornado.iostream import StreamClosedError

from node.admission import AdmissionRejected
from node.app import NodeContext
from node.backends.base import GenerationStats, Prompt, PromptTooLong
from node.errors import (
    OpenAIError,
    admission_rejected,
    envelope,
    invalid_request,
    model_not_found,
    model_not_ready,
    shutting_down,
)
from node.generation import (
    ResponseIds,
    chat_chunk,
    chat_completion,
    completion,
    completion_chunk,
    stream_text,
    usage_chunk,
)
from node.models import ServedModel
from node.openai_schema import (
    ChatCompletionRequest,
    CompletionRequest,
    SamplingParams,
    chat_sampling,
    completion_prompt,
    completion_sampling,
    parse_json_object,
    validate_chat,
    validate_completion,
)

log = logging.getLogger(__name__)

# Set by Envoy on model routes: the canonical model id an alias resolved to.
ROUTED_MODEL_HEADER = "x-fleet-model"

_STATUS_TEXT = {
    400: ("Bad request.", "invalid_request_error"),
    404: ("Not found.", "invalid_request_error"),
    405: ("Method not allowed.", "invalid_request_error"),
    413: ("Request body too large.", "invalid_request_error"),
}
LOADING_RETRY_S = 5
FAILED_RETRY_S = 60


class BaseHandler(tornado.web.RequestHandler):
    @property
    def ctx(self) -> NodeContext:
        ctx: NodeContext = self.application.settings["fleet_ctx"]
        return ctx

    def set_default_headers(self) -> None:
        self.set_header("x-fleet-node", self.ctx.name)

    def compute_etag(self) -> str | None:
        return None  # live state: never a 304

    def write_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("content-type", "application/json")
        self.finish(json.dumps(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, OpenAIError):
            for key, value in exc.headers.items():
                self.set_header(key, value)
            self.write_json(exc.body(), exc.status)
            return
        message, type_ = _STATUS_TEXT.get(status_code, ("Internal server error.", "server_error"))
        if status_code == 405:
            message = f"Method {self.request.method} is not allowed on {self.request.path}."
        self.write_json(envelope(message, type_, None, None), status_code)

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(value, OpenAIError):
            log.debug("request refused", extra={"fields": {"status": value.status}})
            return
        super().log_exception(typ, value, tb)


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        raise OpenAIError(
            404,
            f"Unknown URL: {self.request.method} {self.request.path}",
            code="unknown_url",
        )


class HealthHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("cache-control", "no-store")
        self.write_json(self.ctx.health())


class ModelsHandler(BaseHandler):
    def get(self) -> None:
        created = 0
        data = [
            {
                "id": m.id,
                "object": "model",
                "created": created,
                "owned_by": f"fleet:{self.ctx.name}",
            }
            for m in self.ctx.models.values()
        ]
        self.write_json({"object": "list", "data": data})


class HealthStreamHandler(BaseHandler):
    """Server-sent events: a snapshot at once, on every change (coalesced) and each second."""

    KEEPALIVE_S = 1.0

    def initialize(self) -> None:
        self._event: asyncio.Event | None = None
        self._gone = False

    def on_connection_close(self) -> None:
        self._gone = True
        if self._event is not None:
            self._event.set()

    async def get(self) -> None:
        ctx = self.ctx
        self.set_header("content-type", "text/event-stream")
        self.set_header("cache-control", "no-store")
        self._event = event = ctx.hub.subscribe()
        try:
            while not self._gone and not ctx.shutting_down:
                event.clear()
                self.write(f"data: {json.dumps(ctx.health())}\n\n")
                await self.flush()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), self.KEEPALIVE_S)
        except StreamClosedError:
            return
        finally:
            ctx.hub.unsubscribe(event)
        if not self._gone:
            self.finish()


@tornado.web.stream_request_body
class _InferenceHandler(BaseHandler):
    """Body size limit while streaming the body in, then admission, then generation."""

    def initialize(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._work: asyncio.Task[None] | None = None
        self._gone = False

    def _too_large(self) -> OpenAIError:
        return OpenAIError(
            413,
            f"The request body exceeds this node's limit of {self.ctx.max_body_bytes} bytes.",
            code="request_too_large",
        )

    def prepare(self) -> None:
        length = self.request.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.ctx.max_body_bytes:
            raise self._too_large()

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= self.ctx.max_body_bytes:
            self._chunks.append(chunk)

    def on_connection_close(self) -> None:
        self._gone = True
        if self._work is not None:
            self._work.cancel()

    def _body(self) -> dict[str, Any]:
        if self._size > self.ctx.max_body_bytes:
            raise self._too_large()
        return parse_json_object(b"".join(self._chunks))

    def _routed_model_id(self, requested: str) -> str:
        """The id Envoy resolved an alias to (``x-fleet-model``), else the body's ``model``.

        Envoy routes aliases without rewriting the body, so a node reached through an alias
        route sees the alias in the body and the canonical id in this header. The header only
        counts when it names a model served here; otherwise the body decides.
        """
        routed = self.request.headers.get(ROUTED_MODEL_HEADER)
        if routed and routed in self.ctx.models:
            return routed
        return requested

    def _model(self, model_id: str) -> ServedModel:
        model = self.ctx.models.get(model_id)
        if model is None:
            raise model_not_found(model_id)
        if model.state == "loading":
            raise model_not_ready(model.id, model.state, LOADING_RETRY_S, None)
        if model.state == "failed":
            raise model_not_ready(model.id, model.state, FAILED_RETRY_S, model.error)
        return model

    async def _run(
        self, model: ServedModel, body: ChatCompletionRequest | CompletionRequest
    ) -> None:
        """Admit, serve, release. Cancellation (disconnect/shutdown) lands here too."""
        if self.ctx.shutting_down:
            raise shutting_down()
        self.set_header("x-fleet-backend", model.backend.kind)
        admission = model.admission
        try:
            permit = await admission.acquire()
        except AdmissionRejected as rej:
            raise admission_rejected(model.id, rej.reason, rej.retry_after) from None
        outcome = "cancelled"
        try:
            stats = await self._serve(model, body)
            outcome = "ok"
            # Before release, so the /health that release triggers carries the new speed.
            admission.decode_speed.observe(stats.completion_tokens, stats.generation_s)
        except (OpenAIError, PromptTooLong, StreamClosedError):
            outcome = "cancelled"  # a client error or a gone client says nothing of speed
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            admission.release(permit, outcome)

    # Subclasses say how a request becomes a prompt and how the answer is shaped.
    _id_prefix: str

    def _encode(self, model: ServedModel, body: Any) -> Prompt:
        raise NotImplementedError

    def _sampling(self, body: Any) -> SamplingParams:
        raise NotImplementedError

    def _whole(
        self, ids: ResponseIds, text: str, stats: GenerationStats, prompt_tokens: int
    ) -> dict[str, Any]:
        """The non-streaming response object."""
        raise NotImplementedError

    def _events(
        self,
        ids: ResponseIds,
        pieces: AsyncGenerator[str, None],
        stats: GenerationStats,
        prompt_tokens: int,
        include_usage: bool,
    ) -> AsyncIterator[dict[str, Any]]:
        """The SSE chunk objects, ending with the finish reason (and usage when asked)."""
        raise NotImplementedError

    async def _respond(
        self,
        body: Any,
        ids: ResponseIds,
        pieces: AsyncGenerator[str, None],
        stats: GenerationStats,
        prompt_tokens: int,
    ) -> None:
        if not body.stream:
            text = "".join([p async for p in pieces])
            self.write_json(self._whole(ids, text, stats, prompt_tokens))
            return
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        await self._send_sse(self._events(ids, pieces, stats, prompt_tokens, include_usage))

    async def _serve(self, model: ServedModel, body: Any) -> GenerationStats:
        """Generate and respond; the finished generation's stats."""
        prompt = self._encode(model, body)
        stats = GenerationStats()
        ids = ResponseIds(self._id_prefix, model.id, model.backend.kind)
        pieces = stream_text(model.backend, prompt, self._sampling(body), stats)
        try:
            await self._respond(body, ids, pieces, stats, prompt.n_tokens)
        finally:
            await pieces.aclose()  # stops generation if the client left mid-way
        return stats

    async def _handle(self, validate: Any) -> None:
        if self.ctx.shutting_down:
            raise shutting_down()
        body = validate(self._body())
        model = self._model(self._routed_model_id(body.model))
        self._work = work = asyncio.ensure_future(self._run(model, body))
        self.ctx.requests.add(work)
        try:
            await work
        except (asyncio.CancelledError, StreamClosedError):
            if self._gone:
                log.debug("client went away", extra={"fields": {"model": model.id}})
                return
            if not self._headers_written:
                raise shutting_down() from None
            self.finish()  # shutdown mid-stream: end it cleanly
        except PromptTooLong as exc:
            raise invalid_request(str(exc), param=self._prompt_param) from None
        finally:
            self.ctx.requests.discard(work)

    _prompt_param = "messages"

    async def _send_sse(self, events: AsyncIterator[dict[str, Any]]) -> None:
        self.set_header("content-type", "text/event-stream")
        self.set_header("cache-control", "no-cache")
        self.set_header("x-accel-buffering", "no")
        try:
            async for event in events:
                self.write(f"data: {json.dumps(event)}\n\n")
                await self.flush()
        except (asyncio.CancelledError, StreamClosedError):
            raise
        except Exception:
            # Headers are gone already: report in-band, as OpenAI's own streams do.
            log.exception("generation failed mid-stream")
            err = envelope("The model failed while generating.", "server_error")
            self.write(f"data: {json.dumps(err)}\n\n")
            self.finish()
            raise
        self.write("data: [DONE]\n\n")
        self.finish()


class ChatCompletionsHandler(_InferenceHandler):
    async def post(self) -> None:
        await self._handle(validate_chat)

    _id_prefix = "chatcmpl"

    def _encode(self, model: ServedModel, body: ChatCompletionRequest) -> Prompt:
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        return model.backend.encode_chat(messages)

    def _sampling(self, body: ChatCompletionRequest) -> SamplingParams:
        return chat_sampling(body)

    def _whole(
        self, ids: ResponseIds, text: str, stats: GenerationStats, prompt_tokens: int
    ) -> dict[str, Any]:
        return chat_completion(ids, text, stats, prompt_tokens)

    async def _events(
        self,
        ids: ResponseIds,
        pieces: AsyncGenerator[str, None],
        stats: GenerationStats,
        prompt_tokens: int,
        include_usage: bool,
    ) -> AsyncIterator[dict[str, Any]]:
        yield chat_chunk(ids, {"role": "assistant", "content": ""})
        async for piece in pieces:
            yield chat_chunk(ids, {"content": piece})
        yield chat_chunk(ids, {}, stats.finish_reason)
        if include_usage:
            yield usage_chunk(ids, "chat.completion.chunk", stats, prompt_tokens)


class CompletionsHandler(_InferenceHandler):
    _prompt_param = "prompt"

    async def post(self) -> None:
        await self._handle(validate_completion)

    _id_prefix = "cmpl"

    def _encode(self, model: ServedModel, body: CompletionRequest) -> Prompt:
        return model.backend.encode_text(completion_prompt(body))

    def _sampling(self, body: CompletionRequest) -> SamplingParams:
        return completion_sampling(body)

    def _whole(
        self, ids: ResponseIds, text: str, stats: GenerationStats, prompt_tokens: int
    ) -> dict[str, Any]:
        return completion(ids, text, stats, prompt_tokens)

    async def _events(
        self,
        ids: ResponseIds,
        pieces: AsyncGenerator[str, None],
        stats: GenerationStats,
        prompt_tokens: int,
        include_usage: bool,
    ) -> AsyncIterator[dict[str, Any]]:
        async for piece in pieces:
            yield completion_chunk(ids, piece)
        yield completion_chunk(ids, "", stats.finish_reason)
        if include_usage:
            yield usage_chunk(ids, "text_completion", stats, prompt_tokens)
