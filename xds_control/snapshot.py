"""The pure snapshot builder: (operator config, fleet state) -> every Envoy resource.

No I/O and no clock of its own (``state.now`` is the time), so the same inputs always
give byte-identical resources and the cache can tell a real change from a rebuild.
What it does with the fleet:

- static nodes from the config join the reported ones; a reported node wins a name clash;
- a model a node reports must be a declared model id, else it is not routed (a static
  node's models may also name aliases: they are resolved when the config is read);
- each (node, model) gets a weight and health from :mod:`xds_control.weights`; silent
  nodes (``stale_after_s``) and down nodes are UNHEALTHY, never idle; with
  ``weights.speed_aware`` each weight is then scaled by the replica's decode speed
  relative to the fastest routable replica of the same model;
- an address Envoy cannot use as-is (not an IP literal) is skipped; ``localhost`` is read
  as 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

from xds_control.config import FleetConfig
from xds_control.fleet_state import FleetState, ModelLoad, NodeState
from xds_control.resources.clusters import model_cluster
from xds_control.resources.common import LISTENER_NAME, ROUTE_CONFIG_NAME
from xds_control.resources.endpoints import Replica, load_assignment
from xds_control.resources.listener import public_listener
from xds_control.resources.routes import route_configuration
from xds_control.weights import (
    Health,
    endpoint_health,
    endpoint_weight,
    fastest_decode_tps,
    speed_factor,
    speed_weight,
)

_PREFIX = "type.googleapis.com/"
LISTENER_TYPE = _PREFIX + listener_pb2.Listener.DESCRIPTOR.full_name
ROUTE_TYPE = _PREFIX + route_pb2.RouteConfiguration.DESCRIPTOR.full_name
CLUSTER_TYPE = _PREFIX + cluster_pb2.Cluster.DESCRIPTOR.full_name
ENDPOINT_TYPE = _PREFIX + endpoint_pb2.ClusterLoadAssignment.DESCRIPTOR.full_name
ALL_TYPES = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)

__all__ = [
    "ALL_TYPES",
    "CLUSTER_TYPE",
    "ENDPOINT_TYPE",
    "LISTENER_NAME",
    "LISTENER_TYPE",
    "ROUTE_CONFIG_NAME",
    "ROUTE_TYPE",
    "Snapshot",
    "build_snapshot",
    "fleet_nodes",
    "replicas_by_model",
]


@dataclass(frozen=True)
class Snapshot:
    """type URL -> resource name -> message; all four types are always present."""

    resources: dict[str, dict[str, Message]]

    def listener(self) -> listener_pb2.Listener:
        """The public listener, typed."""
        return _typed(self.resources[LISTENER_TYPE][LISTENER_NAME], listener_pb2.Listener)

    def route_configuration(self) -> route_pb2.RouteConfiguration:
        """The one route table, typed."""
        msg = self.resources[ROUTE_TYPE][ROUTE_CONFIG_NAME]
        return _typed(msg, route_pb2.RouteConfiguration)

    def cluster(self, model_id: str) -> cluster_pb2.Cluster:
        """A model's cluster, typed."""
        return _typed(self.resources[CLUSTER_TYPE][model_id], cluster_pb2.Cluster)

    def load_assignment(self, model_id: str) -> endpoint_pb2.ClusterLoadAssignment:
        """A model's endpoints, typed."""
        msg = self.resources[ENDPOINT_TYPE][model_id]
        return _typed(msg, endpoint_pb2.ClusterLoadAssignment)


_M = TypeVar("_M", bound=Message)


def _typed(message: Message, cls: type[_M]) -> _M:
    if not isinstance(message, cls):
        raise TypeError(f"expected {cls.__name__}, got {type(message).__name__}")
    return message


def static_nodes(config: FleetConfig) -> dict[str, NodeState]:
    """The config's static nodes as fleet nodes (no load reports: never stale)."""
    names = config.model_names()
    return {
        n.name: NodeState(
            name=n.name,
            address=n.address,
            port=n.port,
            models={names[m]: ModelLoad(model=names[m]) for m in n.models},
            static=True,
        )
        for n in config.nodes
    }


def fleet_nodes(config: FleetConfig, state: FleetState) -> dict[str, NodeState]:
    """Static nodes plus reported ones; a reported node wins a name clash."""
    return {**static_nodes(config), **state.nodes}


def _envoy_address(address: str) -> str | None:
    if address == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(address.strip("[]")))
    except ValueError:
        return None


def replicas_by_model(config: FleetConfig, state: FleetState) -> dict[str, list[Replica]]:
    """Every declared model id -> its replicas with weight and health (maybe empty)."""
    policy = config.weights
    seen: dict[str, list[tuple[Replica, ModelLoad | None]]] = {m.id: [] for m in config.models}
    for node in sorted(fleet_nodes(config, state).values(), key=lambda n: n.name):
        address = _envoy_address(node.address)
        if address is None or not 0 < node.port < 65536:
            continue
        stale = node.is_stale(state.now, config.stale_after_s)
        for model_id, load in sorted(node.models.items()):
            if model_id not in seen:
                continue
            known = None if node.static else load
            health = endpoint_health(known, policy, up=node.up, stale=stale)
            weight = 1 if health is Health.UNHEALTHY else endpoint_weight(known, policy)
            seen[model_id].append((Replica(node.name, address, node.port, weight, health), known))
    # Speed is relative, so it needs every replica of the model: the fastest routable one
    # keeps its load weight, slower ones are scaled down (weights.speed_factor).
    out: dict[str, list[Replica]] = {}
    for model_id, reps in seen.items():
        fastest = fastest_decode_tps(k for r, k in reps if r.health is not Health.UNHEALTHY)
        out[model_id] = [
            r
            if r.health is Health.UNHEALTHY
            else replace(r, weight=speed_weight(r.weight, speed_factor(k, fastest, policy)))
            for r, k in reps
        ]
    return out


def build_snapshot(config: FleetConfig, state: FleetState) -> Snapshot:
    """All resources for this config and fleet; pure and deterministic."""
    replicas = replicas_by_model(config, state)
    routable = {
        model_id: sum(r.health is not Health.UNHEALTHY for r in reps)
        for model_id, reps in replicas.items()
    }
    buffer_limit = config.listener.max_request_bytes
    return Snapshot(
        resources={
            CLUSTER_TYPE: {m.id: model_cluster(m, buffer_limit) for m in config.models},
            ENDPOINT_TYPE: {
                model_id: load_assignment(model_id, reps) for model_id, reps in replicas.items()
            },
            LISTENER_TYPE: {LISTENER_NAME: public_listener(config)},
            ROUTE_TYPE: {ROUTE_CONFIG_NAME: route_configuration(config, routable)},
        }
    )
