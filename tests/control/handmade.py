"""Hand-made Envoy resources (EDS-over-ADS clusters, an RDS listener) for protocol tests
against real Envoy, independent of the snapshot builder."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2, health_check_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from tests.control.xds_client import cla
from xds_control import resource_types as rt

ADS = config_source_pb2.ConfigSource(
    ads=config_source_pb2.AggregatedConfigSource(),
    resource_api_version=config_source_pb2.V3,
)


def eds_cluster(name: str) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.seconds = 1
    c.eds_cluster_config.eds_config.CopyFrom(ADS)
    c.lb_policy = cluster_pb2.Cluster.ROUND_ROBIN
    return c


def listener(port: int) -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix="public")
    hcm.rds.config_source.CopyFrom(ADS)
    hcm.rds.route_config_name = "routes"
    router = hcm.http_filters.add()
    router.name = "envoy.filters.http.router"
    router.typed_config.Pack(router_pb2.Router())
    lst = listener_pb2.Listener(
        name="public",
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
        ),
    )
    chain = listener_components_pb2.FilterChain()
    f = chain.filters.add()
    f.name = "envoy.filters.network.http_connection_manager"
    f.typed_config.Pack(hcm)
    lst.filter_chains.append(chain)
    return lst


def routes(models: list[str]) -> route_pb2.RouteConfiguration:
    vh = rc.VirtualHost(name="all", domains=["*"])
    for m in models:
        r = vh.routes.add()
        r.match.prefix = "/"
        h = r.match.headers.add()
        h.name = "x-model"
        h.string_match.exact = m
        r.route.cluster = m
    return route_pb2.RouteConfiguration(name="routes", virtual_hosts=[vh])


def snapshot(
    weights: dict[str, dict[int, int]], listen_port: int, degraded: set[int] | None = None
) -> dict[str, dict[str, Any]]:
    """Clusters + CLAs per model, one listener, one route config."""
    clas = {}
    for m, w in weights.items():
        c = cla(m, w)
        for lb in c.endpoints[0].lb_endpoints:
            if lb.endpoint.address.socket_address.port_value in (degraded or set()):
                lb.health_status = health_check_pb2.DEGRADED
        clas[m] = c
    return {
        rt.CLUSTER: {m: eds_cluster(m) for m in weights},
        rt.ENDPOINT: clas,
        rt.LISTENER: {"public": listener(listen_port)},
        rt.ROUTE: {"routes": routes(sorted(weights))},
    }
