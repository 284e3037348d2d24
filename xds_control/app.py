"""The control-plane process: gRPC (ADS + load reports), HTTP and the config watcher.

One asyncio loop runs everything; ``serve`` returns once ``stop`` is set, after closing
both listening ports, so a restarted control plane can bind them again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc

from fleet.proto import load_pb2_grpc
from xds_control.ads import AdsServicer
from xds_control.cache import SnapshotCache
from xds_control.config import FleetConfig
from xds_control.control import ControlPlane
from xds_control.http import start_http
from xds_control.ingest import LoadIngestServicer
from xds_control.metrics import Metrics
from xds_control.watch import watch_file

log = logging.getLogger("xds_control.app")

# Long-lived Envoy streams: tolerate client keepalive pings, never cap stream age.
_GRPC_OPTIONS = [
    ("grpc.so_reuseport", 0),  # a port clash must fail, not silently share the port
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
    ("grpc.http2.max_ping_strikes", 0),
]


_WATCH_START_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Bound:
    """Where the process actually listens (ports resolved when 0 was asked)."""

    xds: str
    http: str


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve(
    config: FleetConfig,
    config_path: str | os.PathLike[str],
    xds: tuple[str, int],
    http: tuple[str, int],
    stop: asyncio.Event,
    *,
    coalesce_s: float = 0.02,
    resync_s: float = 0.0,
    watch: bool = True,
    on_ready: Callable[[Bound, ControlPlane], None] | None = None,
) -> None:
    """Serve until ``stop`` is set. Raises OSError/RuntimeError when a port cannot be bound."""
    cache = SnapshotCache()
    metrics = Metrics()
    plane = ControlPlane(config, config_path, cache, metrics, coalesce_s=coalesce_s)
    plane.rebuild()  # a complete snapshot before the first Envoy can connect

    server = grpc.aio.server(options=_GRPC_OPTIONS)
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(
        AdsServicer(cache, metrics, resync_at=asyncio.get_running_loop().time() + resync_s),
        server,
    )
    ingest = LoadIngestServicer(plane.on_node, plane.settings, metrics)
    plane.on_settings_changed = ingest.settings_changed
    load_pb2_grpc.add_LoadReportingServicer_to_server(ingest, server)
    xds_port = server.add_insecure_port(_hostport(*xds))
    http_server = None
    watcher: asyncio.Task[None] | None = None
    try:
        await server.start()
        http_server, http_port = start_http(plane, *http)
        if watch:
            watching = asyncio.Event()
            watcher = asyncio.create_task(
                watch_file(config_path, plane.reload, stop, started=watching)
            )
            # "ready" promises that an edit from now on is seen (unless we are stopping).
            started = asyncio.create_task(watching.wait())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait(
                [started, stopping, watcher],
                timeout=_WATCH_START_TIMEOUT_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
            started.cancel()
            stopping.cancel()
            if not watching.is_set() and not stop.is_set():
                log.warning("config watcher not confirmed; hot reload may miss early edits")
        bound = Bound(xds=_hostport(xds[0], xds_port), http=_hostport(http[0], http_port))
        log.info(
            "ready",
            extra={"fields": {"xds": bound.xds, "http": bound.http, "config": str(config_path)}},
        )
        if on_ready is not None:
            on_ready(bound, plane)
        await stop.wait()
    finally:
        log.info("shutting down")
        if watcher is not None:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(watcher, 2)
        if http_server is not None:
            http_server.stop()
            await http_server.close_all_connections()
        await server.stop(grace=0.5)
        plane.close()
