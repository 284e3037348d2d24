"""Run a node: listen at once, load models in the background, shut down on SIGINT/SIGTERM.

Shutdown order: stop accepting (the port is freed), refuse new work, end health streams
and in-flight generations, close remaining connections, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

import tornado.httpserver
import tornado.netutil

from node.app import NodeContext, make_app

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 5.0


async def serve(ctx: NodeContext, host: str, port: int, stop: asyncio.Event | None = None) -> int:
    """Serve until ``stop`` is set or a signal arrives; returns the exit code."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    try:
        sockets = tornado.netutil.bind_sockets(port, address=host)
    except OSError as exc:
        log.error(
            "cannot listen", extra={"fields": {"address": f"{host}:{port}", "error": str(exc)}}
        )
        return 1
    server = tornado.httpserver.HTTPServer(
        make_app(ctx),
        max_body_size=1 << 40,  # the handlers enforce --max-body-bytes with a proper 413
        idle_connection_timeout=3600,
    )
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()
    log.info(
        "listening",
        extra={
            "fields": {
                "address": f"{host}:{bound[1]}",
                "node": ctx.name,
                "models": ",".join(ctx.models),
            }
        },
    )
    loading = asyncio.ensure_future(ctx.load_all())
    try:
        await stop.wait()
    finally:
        log.info("shutting down", extra={"fields": {"node": ctx.name}})
        server.stop()
        ctx.begin_shutdown()
        loading.cancel()
        await ctx.drain(DRAIN_TIMEOUT_S)
        try:
            await asyncio.wait_for(server.close_all_connections(), DRAIN_TIMEOUT_S)
        except TimeoutError:
            log.warning("connections still open at exit")
        if in_main_thread:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    log.info("stopped", extra={"fields": {"node": ctx.name}})
    return 0
