"""Operator HTTP endpoints: Prometheus ``/metrics``, ``/healthz`` and read-only ``/snapshot``.

Served by Tornado on the same asyncio loop as the gRPC server, so handlers read live
state without locks. Nothing here can change the control plane.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado import httpserver, netutil, web

from xds_control.control import ControlPlane
from xds_control.resource_types import short_name


def snapshot_json(plane: ControlPlane) -> dict[str, Any]:
    """The current resources, the fleet and every Envoy's ACK state, JSON-ready."""
    snap = plane.cache.snapshot
    types: dict[str, Any] = {}
    for type_url, typed in snap.types.items():
        resources: dict[str, Any] = {}
        for name, res in sorted(typed.resources.items()):
            try:
                body: Any = json_format.MessageToDict(res.message)
            except (TypeError, KeyError):  # an Any whose type this process cannot resolve
                body = str(res.message)
            resources[name] = {"version": res.version, "resource": body}
        types[short_name(type_url)] = {
            "type_url": type_url,
            "version": typed.version,
            "resources": resources,
        }
    state = plane.store.state()
    return {
        "serial": snap.serial,
        "types": types,
        "nodes": {
            name: {
                "address": f"{n.address}:{n.port}",
                "up": n.up,
                "static": n.static,
                "stale": n.is_stale(state.now, plane.store.stale_after_s),
                "models": {
                    m.model: {
                        "state": m.state.value,
                        "in_flight": m.in_flight,
                        "queue_depth": m.queue_depth,
                        "max_in_flight": m.max_in_flight,
                        "max_queue_depth": m.max_queue_depth,
                    }
                    for m in n.models.values()
                },
            }
            for name, n in sorted(state.nodes.items())
        },
        "envoys": [s.as_dict() for s in plane.cache.streams()],
    }


class _Base(web.RequestHandler):
    def initialize(self, plane: ControlPlane) -> None:
        self.plane = plane

    def write_json(self, body: Any) -> None:
        self.set_header("content-type", "application/json")
        self.finish(json.dumps(body, indent=1, sort_keys=False))


class MetricsHandler(_Base):
    def get(self) -> None:
        self.plane.update_gauges()
        self.set_header("content-type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.plane.metrics.registry))


class HealthHandler(_Base):
    def get(self) -> None:
        self.write_json({"status": "ok", "serial": self.plane.cache.snapshot.serial})


class SnapshotHandler(_Base):
    def get(self) -> None:
        self.write_json(snapshot_json(self.plane))


def make_app(plane: ControlPlane) -> web.Application:
    args = {"plane": plane}
    return web.Application(
        [
            (r"/metrics", MetricsHandler, args),
            (r"/healthz", HealthHandler, args),
            (r"/snapshot", SnapshotHandler, args),
        ]
    )


def start_http(plane: ControlPlane, host: str, port: int) -> tuple[httpserver.HTTPServer, int]:
    """Listen on host:port (0 = any free port); returns the server and the bound port."""
    sockets = netutil.bind_sockets(port, address=host, family=socket.AF_UNSPEC, reuse_port=False)
    server = httpserver.HTTPServer(make_app(plane))
    server.add_sockets(sockets)
    return server, int(sockets[0].getsockname()[1])
