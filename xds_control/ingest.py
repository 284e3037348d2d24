"""Load ingestion: the LoadReporting gRPC servicer sidecars dial into.

A stream's first report names the node; every report carries the node's full per-model
state, which :func:`report_to_node` turns into a :class:`NodeState`. Reports older than
one already seen on the stream (by ``sequence``) are dropped. When a stream ends the node
keeps its last state and goes stale after the TTL unless its sidecar reconnects:
reconnects are normal, silence is what marks a node unroutable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import grpc

from fleet.proto import load_pb2, load_pb2_grpc
from xds_control.fleet_state import ModelLoad, ModelState, NodeState
from xds_control.metrics import Metrics

log = logging.getLogger("xds_control.ingest")

_STATES = {
    load_pb2.MODEL_STATE_LOADING: ModelState.LOADING,
    load_pb2.MODEL_STATE_LOADED: ModelState.LOADED,
    load_pb2.MODEL_STATE_FAILED: ModelState.FAILED,
}


class ReportError(ValueError):
    """A report that cannot describe a node (the stream is refused with this message)."""


def check_identity(node: load_pb2.NodeIdentity) -> None:
    if not node.name:
        raise ReportError("the first LoadReport of a stream must carry node.name")
    if not node.address:
        raise ReportError(f"node {node.name!r}: node.address is empty")
    if not 0 < node.port <= 65535:
        raise ReportError(f"node {node.name!r}: node.port {node.port} out of range 1-65535")


def report_to_node(
    report: load_pb2.LoadReport, identity: load_pb2.NodeIdentity, now: float
) -> NodeState:
    """The node's full state as one report describes it (pure)."""
    models: dict[str, ModelLoad] = {}
    for m in report.models:
        if not m.model:
            raise ReportError(f"node {identity.name!r}: a model entry has no name")
        models[m.model] = ModelLoad(
            model=m.model,
            # An unspecified state from an older sidecar: the node serves it, so loaded.
            state=_STATES.get(m.state, ModelState.LOADED),
            in_flight=m.in_flight,
            queue_depth=m.queue_depth,
            max_in_flight=m.max_in_flight,
            max_queue_depth=m.max_queue_depth,
            admitted_total=m.admitted_total,
            rejected_total=m.rejected_total,
            decode_tps=m.decode_tps,
        )
    return NodeState(
        name=identity.name,
        address=identity.address,
        port=identity.port,
        models=models,
        up=report.node_up,
        last_report=now,
        static=False,
    )


class _Session:
    """One sidecar stream's identity and ordering; raises ReportError on bad input."""

    def __init__(self) -> None:
        self.identity: load_pb2.NodeIdentity | None = None
        self.last_sequence = 0

    def accept(self, report: load_pb2.LoadReport, now: float) -> NodeState | None:
        """The node state this report describes, or None when it is out of order."""
        if self.identity is None:
            check_identity(report.node)
            self.identity = load_pb2.NodeIdentity()
            self.identity.CopyFrom(report.node)
        elif report.node.name and report.node.name != self.identity.name:
            raise ReportError(
                f"node name changed mid-stream: {self.identity.name!r} -> {report.node.name!r}"
            )
        if report.sequence and report.sequence <= self.last_sequence:
            return None
        self.last_sequence = report.sequence or self.last_sequence
        return report_to_node(report, self.identity, now)


_END = object()


class LoadIngestServicer(load_pb2_grpc.LoadReportingServicer):
    """Feeds every sidecar's reports into ``on_node`` (the fleet store, via the app).

    Settings (heartbeat interval, staleness TTL) go out at stream start and again to
    every open stream when :meth:`settings_changed` is called (a config reload).
    """

    def __init__(
        self,
        on_node: Callable[[NodeState], None],
        settings: Callable[[], load_pb2.LoadReportResponse],
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_node = on_node
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._streams: set[asyncio.Queue[object]] = set()

    def settings_changed(self) -> None:
        settings = self._settings()
        for queue in self._streams:
            queue.put_nowait(settings)

    async def StreamLoad(
        self,
        request_iterator: AsyncIterator[load_pb2.LoadReport],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[load_pb2.LoadReportResponse]:
        queue: asyncio.Queue[object] = asyncio.Queue()

        async def read() -> None:
            try:
                async for report in request_iterator:
                    queue.put_nowait(report)
            except (asyncio.CancelledError, grpc.aio.AioRpcError):
                pass
            finally:
                queue.put_nowait(_END)

        session = _Session()
        self._streams.add(queue)
        reader = asyncio.create_task(read())
        self._metrics.sidecars.inc()
        try:
            yield self._settings()
            while (item := await queue.get()) is not _END:
                if isinstance(item, load_pb2.LoadReportResponse):
                    yield item
                    continue
                assert isinstance(item, load_pb2.LoadReport)
                known = session.identity is not None
                try:
                    node = session.accept(item, self._clock())
                except ReportError as exc:
                    self._metrics.reports.labels("invalid").inc()
                    log.warning("refused load report stream", extra={"fields": {"error": exc}})
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
                    return
                if not known and session.identity is not None:
                    log.info(
                        "sidecar connected",
                        extra={
                            "fields": {
                                "node": session.identity.name,
                                "address": f"{session.identity.address}:{session.identity.port}",
                                "peer": context.peer(),
                            }
                        },
                    )
                if node is None:
                    self._metrics.reports.labels("out_of_order").inc()
                    continue
                self._metrics.reports.labels("heartbeat" if item.heartbeat else "load").inc()
                if item.observed_unix_nanos > 0:
                    lag = (time.time_ns() - item.observed_unix_nanos) / 1e9
                    self._metrics.report_lag.observe(max(lag, 0.0))
                self._on_node(node)
        finally:
            reader.cancel()
            self._streams.discard(queue)
            self._metrics.sidecars.dec()
            if session.identity is not None:
                log.info("sidecar disconnected", extra={"fields": {"node": session.identity.name}})
