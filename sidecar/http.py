"""The sidecar's HTTP edge: ``/metrics`` for Prometheus and ``/healthz`` for liveness."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tornado.web
from prometheus_client import CollectorRegistry, exposition


class MetricsHandler(tornado.web.RequestHandler):
    def initialize(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def get(self) -> None:
        # Always the classic text format: prometheus_client 0.26's OpenMetrics encoder (what
        # Prometheus asks for first) rewrites `vllm:num_requests_running` to
        # `vllm_num_requests_running`, breaking every vLLM dashboard.
        self.set_header("content-type", exposition.CONTENT_TYPE_PLAIN_0_0_4)
        self.write(exposition.generate_latest(self.registry))


class HealthzHandler(tornado.web.RequestHandler):
    """200 while the sidecar runs, whatever its node or control plane is doing."""

    def initialize(self, status: Callable[[], dict[str, Any]]) -> None:
        self.status = status

    def get(self) -> None:
        self.write({"status": "ok", **self.status()})


def make_app(
    registry: CollectorRegistry, status: Callable[[], dict[str, Any]]
) -> tornado.web.Application:
    return tornado.web.Application(
        [
            (r"/metrics", MetricsHandler, {"registry": registry}),
            (r"/healthz", HealthzHandler, {"status": status}),
        ],
        log_function=lambda handler: None,  # scrapes every second: access logs are noise
    )
