"""EDS: one ClusterLoadAssignment per model, one LbEndpoint per (node, model).

Weights and health come from :mod:`xds_control.weights`. Endpoints are ordered by node
name so equal weights break ties the same way on every build, and identical fleets give
byte-identical resources (no spurious pushes).

DEGRADED is made strict with a huge ``overprovisioning_factor``: Envoy sends a priority's
healthy hosts min(100%, healthy share x factor) of the traffic and the degraded hosts
the rest, so with the default 140 (or even 100) one healthy + one full replica would
still send the full one 30% (50%) of requests. At OVERPROVISIONING (100000 %) a single
healthy replica among up to 1000 takes everything; the factor stays far from overflow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from xds_control.weights import Health

HEALTH_STATUS: dict[Health, health_check_pb2.HealthStatus.ValueType] = {
    Health.HEALTHY: health_check_pb2.HEALTHY,
    Health.DEGRADED: health_check_pb2.DEGRADED,
    Health.UNHEALTHY: health_check_pb2.UNHEALTHY,
}

OVERPROVISIONING = 100_000


@dataclass(frozen=True)
class Replica:
    """One node serving one model, with the policy's verdict."""

    node: str
    address: str
    port: int
    weight: int
    health: Health


def load_assignment(
    model_id: str, replicas: Iterable[Replica]
) -> endpoint_pb2.ClusterLoadAssignment:
    """The model's endpoints (possibly none: the cluster then answers 503)."""
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=model_id)
    cla.policy.overprovisioning_factor.value = OVERPROVISIONING
    ordered = sorted(replicas, key=lambda r: (r.node, r.address, r.port))
    if ordered:
        locality = cla.endpoints.add()
        for r in ordered:
            lb = endpoint_components_pb2.LbEndpoint(health_status=HEALTH_STATUS[r.health])
            lb.load_balancing_weight.value = max(1, r.weight)
            lb.endpoint.hostname = r.node
            sock = lb.endpoint.address.socket_address
            sock.address = r.address
            sock.port_value = r.port
            locality.lb_endpoints.append(lb)
    return cla
