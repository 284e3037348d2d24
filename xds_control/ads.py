"""The ADS gRPC servicer: the thin I/O edge around the SotW and Delta state machines.

Each stream runs one loop over a private queue fed by two sources: a reader task that
moves Envoy's requests in, and a cache listener that drops a wake-up token in on every
snapshot change. So a push never waits on a read, and a slow Envoy never blocks others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, TypeVar

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from xds_control.cache import SnapshotCache
from xds_control.delta import DeltaStream
from xds_control.metrics import Metrics
from xds_control.resource_types import short_name
from xds_control.sotw import Outcome, SotwStream

log = logging.getLogger("xds_control.ads")

Req = TypeVar("Req")
ReqIn = TypeVar("ReqIn", contravariant=True)
RespOut = TypeVar("RespOut", covariant=True)
Resp = TypeVar("Resp")

_WAKE = object()
_END = object()


class _Machine(Protocol[ReqIn, RespOut]):
    node_id: str

    def on_request(self, req: ReqIn) -> Outcome: ...

    def responses(self, snap: Any) -> Sequence[RespOut]: ...


def _has_prior_config(req: object) -> bool:
    """Does this first request come from an Envoy that already runs a config of ours?"""
    if isinstance(req, discovery_pb2.DiscoveryRequest):
        return bool(req.version_info)
    if isinstance(req, discovery_pb2.DeltaDiscoveryRequest):
        return bool(req.initial_resource_versions)
    return False


class AdsServicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """Serves SotW and Delta ADS from one :class:`SnapshotCache`.

    Resync hold-off: right after a control-plane restart the fleet view is empty until the
    sidecars dial back in. An Envoy that reconnects with a config from before the restart
    is made to wait until ``resync_at`` (loop time) before it gets its first answer, so it
    keeps serving its last good endpoints instead of being handed an empty fleet. A fresh
    Envoy has nothing to keep and is answered at once.
    """

    def __init__(
        self, cache: SnapshotCache, metrics: Metrics, *, resync_at: float = float("-inf")
    ) -> None:
        self._cache = cache
        self._metrics = metrics
        self._resync_at = resync_at

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        async for resp in self._serve("sotw", SotwStream(), request_iterator, context):
            yield resp

    async def DeltaAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        async for resp in self._serve("delta", DeltaStream(), request_iterator, context):
            yield resp

    async def _serve(
        self,
        api: str,
        machine: _Machine[Req, Resp],
        request_iterator: AsyncIterator[Req],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[Resp]:
        queue: asyncio.Queue[object] = asyncio.Queue()
        record = self._cache.open_stream(api, context.peer() or "?")

        async def read() -> None:
            try:
                async for req in request_iterator:
                    queue.put_nowait(req)
            except (asyncio.CancelledError, grpc.aio.AioRpcError):
                pass
            finally:
                queue.put_nowait(_END)

        def wake() -> None:
            queue.put_nowait(_WAKE)

        reader = asyncio.create_task(read())
        unsubscribe = self._cache.subscribe(wake)
        self._metrics.connected_envoys.labels(api).inc()
        log.info("envoy connected", extra={"fields": {"api": api, "peer": record.peer}})
        first = True
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if first and item is not _WAKE:
                    first = False
                    await self._hold_resync(item, record.peer)
                if item is not _WAKE:
                    outcome = machine.on_request(item)  # type: ignore[arg-type]
                    record.node_id = machine.node_id
                    self._note(record.stream_id, machine.node_id, outcome)
                for resp in machine.responses(self._cache.snapshot):
                    self._metrics.pushes.labels(short_name(resp.type_url)).inc()  # type: ignore[attr-defined]
                    yield resp
        finally:
            reader.cancel()
            unsubscribe()
            self._cache.close_stream(record.stream_id)
            self._metrics.connected_envoys.labels(api).dec()
            log.info(
                "envoy disconnected",
                extra={"fields": {"api": api, "peer": record.peer, "node": record.node_id}},
            )

    async def _hold_resync(self, req: object, peer: str) -> None:
        wait = self._resync_at - asyncio.get_running_loop().time()
        if wait > 0 and _has_prior_config(req):
            log.info(
                "envoy reconnected with a prior config; holding it until sidecars resync",
                extra={"fields": {"peer": peer, "wait_s": round(wait, 2)}},
            )
            await asyncio.sleep(wait)

    def _note(self, stream_id: int, node_id: str, outcome: Outcome) -> None:
        kind = short_name(outcome.type_url)
        if outcome.kind == "ack":
            self._cache.record_ack(stream_id, outcome.type_url, outcome.version)
        elif outcome.kind == "nack":
            self._cache.record_nack(stream_id, outcome.type_url, outcome.version, outcome.error)
            self._metrics.nacks.labels(kind).inc()
            log.warning(
                "envoy rejected resources (NACK); keeping its last accepted version",
                extra={
                    "fields": {
                        "node": node_id,
                        "type": kind,
                        "version": outcome.version,
                        "error": outcome.error,
                    }
                },
            )
        elif outcome.kind == "stale":
            log.debug("stale nonce ignored", extra={"fields": {"node": node_id, "type": kind}})
