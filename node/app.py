"""Wiring: the node's shared state and the Tornado Application routing to the handlers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import tornado.web
from tornado.log import access_log

from node.health import HealthHub
from node.models import ModelSpec, NodeSettings, ServedModel, build_model

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass
class NodeContext:
    """Everything the handlers share; lives on the one event loop."""

    name: str
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    models: dict[str, ServedModel] = field(default_factory=dict)
    hub: HealthHub = field(default_factory=HealthHub)
    started: float = field(default_factory=time.monotonic)
    shutting_down: bool = False
    requests: set[asyncio.Task[Any]] = field(default_factory=set)

    def health(self) -> dict[str, Any]:
        return {
            "uptime_secs": round(time.monotonic() - self.started, 3),
            "node": self.name,
            "models": [m.health() for m in self.models.values()],
        }

    async def load_all(self) -> None:
        await asyncio.gather(*(m.load() for m in self.models.values()))

    def begin_shutdown(self) -> None:
        """Refuse new work, end health streams and cancel in-flight generations."""
        self.shutting_down = True
        self.hub.changed()
        for task in list(self.requests):
            task.cancel()

    async def drain(self, grace_s: float) -> None:
        pending = [t for t in self.requests if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=grace_s)
        for model in self.models.values():
            await model.backend.close()


def build_context(
    name: str, specs: Iterable[ModelSpec], settings: NodeSettings, max_body_bytes: int
) -> NodeContext:
    ctx = NodeContext(name=name, max_body_bytes=max_body_bytes)
    for spec in specs:
        if spec.id in ctx.models:
            raise ValueError(f"model id {spec.id!r} given twice")
        ctx.models[spec.id] = build_model(spec, settings, ctx.hub.changed)
    return ctx


def make_app(ctx: NodeContext) -> tornado.web.Application:
    from node import handlers

    return tornado.web.Application(
        [
            (r"/v1/chat/completions", handlers.ChatCompletionsHandler),
            (r"/v1/completions", handlers.CompletionsHandler),
            (r"/v1/models", handlers.ModelsHandler),
            (r"/health", handlers.HealthHandler),
            (r"/health/stream", handlers.HealthStreamHandler),
        ],
        default_handler_class=handlers.NotFoundHandler,
        fleet_ctx=ctx,
        compress_response=False,
        log_function=_log_request,
    )


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Per-request lines are DEBUG (refusals are normal operation); only 5xx bugs warn."""
    status = handler.get_status()
    level = logging.WARNING if status >= 500 and status != 503 else logging.DEBUG
    if not access_log.isEnabledFor(level):
        return
    access_log.log(
        level,
        "request",
        extra={
            "fields": {
                "method": handler.request.method,
                "path": handler.request.path,
                "status": status,
                "ms": round(1000 * handler.request.request_time(), 2),
            }
        },
    )
