"""The sidecar's own health in Prometheus terms (is it connected, what does it send)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Stats:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected = Gauge(
            "fleet_sidecar_control_connected",
            "1 while a load-report stream to the control plane is open and answered",
            registry=registry,
        )
        self.connects = Counter(
            "fleet_sidecar_control_connects",
            "Load-report streams the control plane answered (reconnects included)",
            registry=registry,
        )
        self.reports = Counter(
            "fleet_sidecar_reports_sent",
            "Load reports written to the control plane, by kind",
            ["kind"],
            registry=registry,
        )
        for kind in ("announce", "change", "heartbeat"):
            self.reports.labels(kind)
