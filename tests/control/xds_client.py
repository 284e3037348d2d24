"""A minimal ADS client and an in-process ADS server for protocol tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import wrappers_pb2

from xds_control import resource_types as rt
from xds_control.ads import AdsServicer
from xds_control.cache import SnapshotCache
from xds_control.metrics import Metrics


def cluster(name: str, connect_timeout_s: int = 1) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.seconds = connect_timeout_s
    return c


def cla(name: str, weights: dict[int, int]) -> endpoint_pb2.ClusterLoadAssignment:
    """A CLA with one endpoint per port, weighted."""
    lbs = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=p)
                )
            ),
            load_balancing_weight=wrappers_pb2.UInt32Value(value=w),
        )
        for p, w in sorted(weights.items())
    ]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lbs)]
    )


def route(name: str, cluster_name: str) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            rc.VirtualHost(
                name="all",
                domains=["*"],
                routes=[
                    rc.Route(
                        match=rc.RouteMatch(prefix="/"),
                        route=rc.RouteAction(cluster=cluster_name),
                    )
                ],
            )
        ],
    )


def resources(
    clusters: dict[str, dict[int, int]], routes: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """A full snapshot: one Cluster + CLA per entry, optional route configs."""
    return {
        rt.CLUSTER: {n: cluster(n) for n in clusters},
        rt.ENDPOINT: {n: cla(n, w) for n, w in clusters.items()},
        rt.LISTENER: {},
        rt.ROUTE: {n: route(n, c) for n, c in (routes or {}).items()},
    }


class AdsServer:
    """An in-process grpc.aio ADS server on a free loopback port."""

    def __init__(self, port: int = 0, resync_s: float = 0.0) -> None:
        self.cache = SnapshotCache()
        self.metrics = Metrics()
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        resync_at = asyncio.get_running_loop().time() + resync_s if resync_s else float("-inf")
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(
            AdsServicer(self.cache, self.metrics, resync_at=resync_at), self.server
        )
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.target = f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop(0)

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


class AdsClient:
    """One ADS stream (SotW or Delta) with explicit send and bounded receive."""

    def __init__(self, target: str, delta: bool = False, node_id: str = "test-envoy") -> None:
        self.channel = grpc.aio.insecure_channel(target)
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self._out: asyncio.Queue[Any] = asyncio.Queue()
        self.node_id = node_id
        self._first = True
        method = stub.DeltaAggregatedResources if delta else stub.StreamAggregatedResources
        self.call = method(self._requests())

    async def _requests(self) -> AsyncIterator[Any]:
        while True:
            req = await self._out.get()
            if req is None:
                return
            yield req

    def _node(self, req: Any) -> Any:
        if self._first:
            req.node.id = self.node_id
            self._first = False
        return req

    def sotw(self, type_url: str, **kw: Any) -> None:
        self._out.put_nowait(self._node(discovery_pb2.DiscoveryRequest(type_url=type_url, **kw)))

    def ack(self, resp: discovery_pb2.DiscoveryResponse, names: list[str] | None = None) -> None:
        self.sotw(
            resp.type_url,
            version_info=resp.version_info,
            response_nonce=resp.nonce,
            resource_names=names or [],
        )

    def delta(self, type_url: str, **kw: Any) -> None:
        self._out.put_nowait(
            self._node(discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, **kw))
        )

    async def recv(self, within: float = 5.0) -> Any:
        msg = await asyncio.wait_for(self.call.read(), within)
        assert msg is not grpc.aio.EOF, "stream ended"  # type: ignore[attr-defined]
        return msg

    async def close(self) -> None:
        self._out.put_nowait(None)
        self.call.cancel()
        await self.channel.close(None)


def names_of(resp: Any) -> list[str]:
    """Resource names in a SotW or Delta response."""
    if isinstance(resp, discovery_pb2.DeltaDiscoveryResponse):
        return [r.name for r in resp.resources]
    out = []
    for any_msg in resp.resources:
        if any_msg.type_url == rt.ENDPOINT:
            m: Any = endpoint_pb2.ClusterLoadAssignment()
            any_msg.Unpack(m)
            out.append(m.cluster_name)
        else:
            m = {rt.CLUSTER: cluster_pb2.Cluster, rt.ROUTE: route_pb2.RouteConfiguration}[
                any_msg.type_url
            ]()
            any_msg.Unpack(m)
            out.append(m.name)
    return out


def weights_of(resp: Any, name: str) -> list[int]:
    """Endpoint weights of one CLA inside a response."""
    packed = (
        [r.resource for r in resp.resources if r.name == name]
        if isinstance(resp, discovery_pb2.DeltaDiscoveryResponse)
        else list(resp.resources)
    )
    for any_msg in packed:
        m = endpoint_pb2.ClusterLoadAssignment()
        any_msg.Unpack(m)
        if m.cluster_name == name:
            return [lb.load_balancing_weight.value for lb in m.endpoints[0].lb_endpoints]
    raise AssertionError(f"{name} not in response")


async def until(pred: Any, within: float, what: str) -> Any:
    """Async wait on a condition (the event loop keeps running while we poll)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = pred()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)
