"""Wiring one sidecar process: node reader, reporter and HTTP server on one asyncio loop,
stopped cleanly (port freed, streams closed) on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

import tornado.httpserver
from prometheus_client import disable_created_metrics

from sidecar.backoff import Backoff
from sidecar.http import make_app
from sidecar.latest import Latest
from sidecar.metrics import build_registry
from sidecar.node_watch import NodeWatcher, Source
from sidecar.report import Identity
from sidecar.reporter import Reporter
from sidecar.stats import Stats

log = logging.getLogger("sidecar")


@dataclass(frozen=True)
class Settings:
    node_url: str
    listen: tuple[str, int]
    control: str
    advertise: tuple[str, int]
    name: str | None = None
    source: Source = "auto"
    poll_interval_s: float = 0.05
    backoff: Backoff = field(default_factory=Backoff)


class Sidecar:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.latest = Latest(settings.name)
        self.registry = build_registry(lambda: self.latest.state, self.node_name)
        self.stats = Stats(self.registry)
        self.watcher = NodeWatcher(
            settings.node_url,
            self.latest.update,
            lambda: self.latest.state,
            source=settings.source,
            poll_interval_s=settings.poll_interval_s,
        )
        self.reporter = Reporter(
            settings.control, self.latest, self.identity, self.stats, settings.backoff
        )

    def node_name(self) -> str:
        return self.settings.name or self.latest.state.name or ""

    def identity(self) -> Identity | None:
        name = self.node_name()
        if not name:
            return None
        host, port = self.settings.advertise
        return Identity(name, host, port)

    def status(self) -> dict[str, Any]:
        return {
            "node": self.node_name() or None,
            "node_up": self.latest.state.up,
            "control_connected": self.reporter.connected,
        }

    async def run(self, stop: asyncio.Event) -> None:
        host, port = self.settings.listen
        server = tornado.httpserver.HTTPServer(make_app(self.registry, self.status))
        server.listen(port, host)
        log.info(
            "sidecar started",
            extra={
                "fields": {
                    "listen": f"{host}:{port}",
                    "node": self.settings.node_url,
                    "control": self.settings.control,
                }
            },
        )
        tasks = [
            asyncio.create_task(self.watcher.run(), name="node-watch"),
            asyncio.create_task(self.reporter.run(), name="reporter"),
        ]
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stopper}:
                task.result()  # a worker ended: surface why instead of idling on
        finally:
            server.stop()  # frees the port first
            for task in [*tasks, stopper]:
                task.cancel()
            await asyncio.gather(*tasks, stopper, return_exceptions=True)
            await server.close_all_connections()
            log.info("sidecar stopped")


async def serve(settings: Settings) -> int:
    # `_created` series double every counter for no dashboard's benefit.
    disable_created_metrics()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await Sidecar(settings).run(stop)
    return 0
