"""The four xDS resource types we serve and the order ADS must send them in.

Order is make-before-break: a cluster must exist before its endpoints arrive, endpoints
before a route can pick the cluster, the listener before its route configuration.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

_PREFIX = "type.googleapis.com/"

CLUSTER = _PREFIX + cluster_pb2.Cluster.DESCRIPTOR.full_name
ENDPOINT = _PREFIX + endpoint_pb2.ClusterLoadAssignment.DESCRIPTOR.full_name
LISTENER = _PREFIX + listener_pb2.Listener.DESCRIPTOR.full_name
ROUTE = _PREFIX + route_pb2.RouteConfiguration.DESCRIPTOR.full_name

# CDS -> EDS -> LDS -> RDS; other types (if any) follow in name order.
ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE)

# Whenever a resource of the key type is sent, the same-named resource of the value type
# is re-sent too: a (re)sent Cluster stays warming until it gets a fresh
# ClusterLoadAssignment, even an unchanged one.
COMPANIONS: dict[str, str] = {CLUSTER: ENDPOINT}

# Types whose resources are only sent by name: an empty SotW request means "none", not
# "all" (Envoy sends one when its last EDS cluster or RDS listener goes away).
NAMED_ONLY: frozenset[str] = frozenset({ENDPOINT, ROUTE})

SHORT_NAMES: dict[str, str] = {CLUSTER: "cds", ENDPOINT: "eds", LISTENER: "lds", ROUTE: "rds"}


def short_name(type_url: str) -> str:
    """``cds``/``eds``/``lds``/``rds`` for metrics labels and logs; the URL tail otherwise."""
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])


def ordered(type_urls: set[str] | list[str]) -> list[str]:
    """The given type URLs in ADS order."""
    rank = {t: i for i, t in enumerate(ORDER)}
    return sorted(type_urls, key=lambda t: (rank.get(t, len(ORDER)), t))
